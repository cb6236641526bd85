// What the charts drawn from metrics_manager's history share: the range picker (the last hour,
// day or week; the screen keeps it in its address) and the banner saying why there is no history.

import { Text, View } from 'react-native';

import { errorMessage } from '../format';
import { METRICS_RANGE_NAMES, METRICS_RANGES, metricsUnavailable, type MetricsRange } from '../hooks/useMetrics';
import { Button } from './Button';
import { ErrorBanner, WarnBanner } from './ErrorBanner';
import { historyStyles as s } from './styles';

export function RangePicker({ range, onChange, testID = 'range' }: { range: MetricsRange; onChange(range: MetricsRange): void; testID?: string }) {
  return (
    <View style={s.picker} role="group" aria-label="Range of the charts" testID={testID}>
      <Text style={s.label}>Last</Text>
      {METRICS_RANGE_NAMES.map((r) => (
        <Button
          key={r}
          label={METRICS_RANGES[r].label}
          size="small"
          variant={r === range ? 'primary' : 'ghost'}
          onPress={() => onChange(r)}
          testID={`${testID}-${r}`}
          accessibilityLabel={`The last ${METRICS_RANGES[r].label}`}
        />
      ))}
    </View>
  );
}

const CHARTS_WAIT = 'The charts are drawn from its history, and will be once it answers again.';

/**
 * Why metrics_manager's answers are missing: it is not running (the gateway's 404, 502 or 503:
 * `about` says what that means here), or another failure (with a retry). Nothing while there is no
 * error.
 */
export function HistoryBanner({ error, onRetry, about = CHARTS_WAIT, testID = 'history-error' }: { error: unknown; onRetry?: () => void; about?: string; testID?: string }) {
  if (error === undefined || error === null) return null;
  if (metricsUnavailable(error)) {
    return (
      <WarnBanner title="metrics_manager is not running" testID={testID}>
        {`${about} (${errorMessage(error)})`}
      </WarnBanner>
    );
  }
  return <ErrorBanner error={error} onRetry={onRetry} testID={testID} />;
}
