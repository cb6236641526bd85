// Bar charts drawn with Views (no chart library, and they render on phones too): `BarChart` of
// values in slots, and `HistoryChart` of a metric's points over a time range (metrics_manager's
// history), each slot a stretch of that range.

import { useState } from 'react';
import { Text, View } from 'react-native';

import { colors } from '../theme';
import { chartStyles as s } from './styles';

export interface BarChartProps {
  title: string;
  /** Oldest first; `null` is a slot without a value (no bar). */
  values: (number | null)[];
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
  /** The value in the header (default: the last value there is). */
  latest?: number;
  /** Beside the latest value, small, e.g. "peak 12/s". */
  note?: string;
  /** Shown across the plot instead of bars: loading, nothing to draw, metrics_manager away. */
  message?: string;
  /** What the bars stand for, said before their count to screen readers (e.g. "12 points"). */
  summary?: string;
  testID?: string;
}

export function BarChart({ title, values, max, format, slots = 40, height = 96, color = colors.gold, since, latest, note, message, summary, testID }: BarChartProps) {
  const shown = message ? [] : values.slice(-slots);
  const padding = Array.from({ length: Math.max(0, slots - shown.length) }, () => null);
  const lastIndex = shown.reduce<number>((last, v, i) => (v === null ? last : i), -1);
  const headline = message ? undefined : (latest ?? (lastIndex >= 0 ? shown[lastIndex]! : undefined));
  const drawn = shown.filter((v) => v !== null).length;
  return (
    <View style={s.wrap} testID={testID} aria-label={`${title} chart`}>
      <View style={s.header}>
        <Text style={s.title}>{title}</Text>
        <View style={s.values}>
          {note && !message ? <Text style={s.note}>{note}</Text> : null}
          <Text style={s.value} testID={testID ? `${testID}-value` : undefined}>
            {headline === undefined ? '—' : format(headline)}
          </Text>
        </View>
      </View>
      <View style={[s.plot, { height }]} role="img" aria-label={`${title}: ${summary ? `${summary} in ` : ''}${drawn} of ${slots} bars${since ? `, from ${since} to now` : ''}`}>
        {[0.25, 0.5, 0.75].map((f) => (
          <View key={f} style={[s.gridLine, { bottom: height * f }]} />
        ))}
        {padding.map((_, i) => (
          <View key={`pad-${i}`} style={s.barSlot} />
        ))}
        {shown.map((v, i) => {
          if (v === null) return <View key={i} style={s.barSlot} />;
          const h = max > 0 ? Math.max(1, Math.min(1, v / max) * height) : 1;
          return (
            <View key={i} style={s.barSlot}>
              <View style={[s.bar, { height: h, backgroundColor: color, opacity: i === lastIndex ? 1 : 0.55 }]} />
            </View>
          );
        })}
        {message ? (
          <View style={s.message}>
            <Text style={s.empty} testID={testID ? `${testID}-empty` : undefined}>
              {message}
            </Text>
          </View>
        ) : null}
      </View>
      <View style={s.axis}>
        <Text style={s.axisText}>{since ?? ''}</Text>
        <Text style={s.axisText}>now</Text>
      </View>
    </View>
  );
}

/** A value at a time (`t`: Unix milliseconds), as metrics_manager answers them. */
export interface TimePoint {
  t: number;
  v: number;
}

/**
 * `points` (any order) between `start` and `end` put into `slots` equal stretches of that range:
 * each slot the mean of its points, `null` where it has none.
 */
export function binPoints(points: TimePoint[], start: number, end: number, slots: number): (number | null)[] {
  const sums = new Array<number>(slots).fill(0);
  const counts = new Array<number>(slots).fill(0);
  const width = (end - start) / slots;
  if (width > 0) {
    for (const p of points) {
      if (p.t < start || p.t > end || !Number.isFinite(p.v)) continue;
      const i = Math.min(slots - 1, Math.floor((p.t - start) / width));
      sums[i]! += p.v;
      counts[i]! += 1;
    }
  }
  return sums.map((sum, i) => (counts[i] ? sum / counts[i]! : null));
}

/** A round top for a scale that holds `peak` (1, 2, 2.5 or 5 times a power of ten). */
export function niceMax(peak: number): number {
  if (!(peak > 0) || !Number.isFinite(peak)) return 1;
  const power = 10 ** Math.floor(Math.log10(peak));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= peak) return m * power;
  return 10 * power;
}

/** The width a bar and its gap take, in pixels: the plot has as many slots as fit. */
const SLOT_PX = 7;
const MIN_SLOTS = 12;
const MAX_SLOTS = 120;

export interface HistoryChartProps {
  title: string;
  /**
   * The points to draw, `undefined` while there are none yet to show (`message` says why). Drawn
   * in time: each bar a stretch of `start`..`end`, empty where there is no point.
   */
  points: TimePoint[] | undefined;
  start: number;
  end: number;
  /** The top of the scale; default a round value above the highest point. */
  max?: number;
  format(value: number): string;
  color?: string;
  /** Caption under the plot's left end, e.g. "1 h ago". */
  since: string;
  /** What the plot says when it has no points: why (loading, metrics_manager away) or that there are none. */
  message?: string;
  /** What it says when the answer holds no point in the range. */
  empty?: string;
  testID?: string;
}

export function HistoryChart({ title, points, start, end, max, format, color, since, message, empty = 'No sample in this range yet.', testID }: HistoryChartProps) {
  const [slots, setSlots] = useState(60);
  const drawn = points && points.length > 0 ? points : undefined;
  const values = drawn ? binPoints(drawn, start, end, slots) : [];
  const latest = drawn ? drawn.reduce((a, b) => (b.t > a.t ? b : a)).v : undefined;
  const peak = drawn ? Math.max(...drawn.map((p) => p.v)) : 0;
  return (
    <View
      onLayout={(e) => {
        const fit = Math.max(MIN_SLOTS, Math.min(MAX_SLOTS, Math.floor(e.nativeEvent.layout.width / SLOT_PX)));
        if (fit !== slots) setSlots(fit);
      }}
    >
      <BarChart
        title={title}
        values={values}
        max={max ?? niceMax(peak)}
        format={format}
        slots={slots}
        color={color}
        since={since}
        latest={latest}
        note={drawn && max === undefined ? `peak ${format(peak)}` : undefined}
        message={drawn ? undefined : (message ?? (points ? empty : 'Reading the history…'))}
        summary={`${drawn?.length ?? 0} ${drawn?.length === 1 ? 'point' : 'points'}`}
        testID={testID}
      />
    </View>
  );
}
