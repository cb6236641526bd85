import { Text, View } from 'react-native';

import { colors } from '../theme';
import { meterStyles as s } from './styles';

/**
 * A horizontal bar: `used` of `total`. A `usage` bar turns amber then red as it fills; a
 * `progress` bar (an upload) stays gold.
 */
export function Meter({ label, used, total, detail, kind = 'usage', testID }: { label: string; used: number; total: number; detail: string; kind?: 'usage' | 'progress'; testID?: string }) {
  const pct = total > 0 ? Math.max(0, Math.min(100, (used / total) * 100)) : 0;
  const color = kind === 'progress' ? colors.gold : pct > 90 ? colors.danger : pct > 75 ? colors.warn : colors.gold;
  return (
    <View style={s.wrap} testID={testID}>
      <View style={s.labels}>
        <Text style={s.label}>{label}</Text>
        <Text style={s.value}>{detail}</Text>
      </View>
      <View style={s.track} role="meter" aria-valuenow={Math.round(pct)} aria-valuemin={0} aria-valuemax={100} aria-label={label}>
        <View style={[s.fill, { width: `${pct}%`, backgroundColor: color }]} />
      </View>
    </View>
  );
}
