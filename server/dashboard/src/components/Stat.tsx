import type { ReactNode } from 'react';
import { Text, View } from 'react-native';

import { statStyles as s } from './styles';

export function Stat({ label, value, detail, children, testID }: { label: string; value: string; detail?: string; children?: ReactNode; testID?: string }) {
  return (
    <View style={s.stat} testID={testID}>
      <Text style={s.label}>{label}</Text>
      <Text style={s.value}>{value}</Text>
      {detail ? <Text style={s.detail}>{detail}</Text> : null}
      {children}
    </View>
  );
}
