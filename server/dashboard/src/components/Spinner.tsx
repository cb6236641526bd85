import { ActivityIndicator, Text, View } from 'react-native';

import { colors } from '../theme';
import { spinnerStyles as s } from './styles';

export function Spinner({ label = 'Loading…' }: { label?: string }) {
  return (
    <View style={s.wrap} role="progressbar" aria-busy aria-label={label}>
      <ActivityIndicator color={colors.gold} size="small" />
      <Text style={s.label}>{label}</Text>
    </View>
  );
}
