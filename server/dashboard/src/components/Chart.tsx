// A bar chart of recent values, drawn with Views (no chart library, and it renders on phones too).

import { Text, View } from 'react-native';

import { colors } from '../theme';
import { chartStyles as s } from './styles';

export interface BarChartProps {
  title: string;
  /** Oldest first. */
  values: number[];
  /** The top of the scale (e.g. 100 for percentages). */
  max: number;
  /** How the latest value is shown, e.g. `42%`. */
  format(value: number): string;
  /** How many bars the plot has room for (older values scroll off). */
  slots?: number;
  height?: number;
  color?: string;
  /** Caption under the plot's left end, e.g. "2 min ago". */
  since?: string;
  testID?: string;
}

export function BarChart({ title, values, max, format, slots = 40, height = 96, color = colors.gold, since, testID }: BarChartProps) {
  const shown = values.slice(-slots);
  const padding = Array.from({ length: Math.max(0, slots - shown.length) }, () => null);
  const latest = shown.at(-1);
  return (
    <View style={s.wrap} testID={testID} aria-label={`${title} chart`}>
      <View style={s.header}>
        <Text style={s.title}>{title}</Text>
        <Text style={s.value}>{latest === undefined ? '—' : format(latest)}</Text>
      </View>
      <View style={[s.plot, { height }]}>
        {[0.25, 0.5, 0.75].map((f) => (
          <View key={f} style={[s.gridLine, { bottom: height * f }]} />
        ))}
        {padding.map((_, i) => (
          <View key={`pad-${i}`} style={s.barSlot} />
        ))}
        {shown.map((v, i) => {
          const h = max > 0 ? Math.max(1, Math.min(1, v / max) * height) : 1;
          const isLatest = i === shown.length - 1;
          return (
            <View key={i} style={s.barSlot}>
              <View style={[s.bar, { height: h, backgroundColor: color, opacity: isLatest ? 1 : 0.55 }]} />
            </View>
          );
        })}
      </View>
      <View style={s.axis}>
        <Text style={s.axisText}>{since ?? ''}</Text>
        <Text style={s.axisText}>now</Text>
      </View>
    </View>
  );
}
