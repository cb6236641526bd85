import { Text, View } from 'react-native';

import { tones, type Tone } from '../theme';
import { badgeStyles as s } from './styles';

/** The tone of the states the platform reports (workers, instances, services, keys). */
export function toneOf(status: string): Tone {
  switch (status) {
    case 'live':
    case 'healthy':
    case 'running':
    case 'enabled':
    case 'admin':
      return 'ok';
    case 'starting':
    case 'pending':
    case 'degraded':
    case 'pending_deletion':
      return 'warn';
    case 'lost':
    case 'unhealthy':
    case 'failed':
    case 'exited':
    case 'down':
      return 'danger';
    case 'viewer':
      return 'info';
    case 'stopped':
    case 'disabled':
      return 'muted';
    default:
      return 'gold';
  }
}

export function StatusBadge({ status, label, tone, testID }: { status: string; label?: string; tone?: Tone; testID?: string }) {
  const t = tones[tone ?? toneOf(status)];
  return (
    <View style={[s.badge, { borderColor: t.fg, backgroundColor: t.bg }]} testID={testID} aria-label={`status ${label ?? status}`}>
      <View style={[s.dot, { backgroundColor: t.fg }]} />
      <Text style={[s.text, { color: t.fg }]}>{(label ?? status).replace(/_/g, ' ')}</Text>
    </View>
  );
}
