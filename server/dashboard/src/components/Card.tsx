import type { ReactNode } from 'react';
import { Text, View, type StyleProp, type ViewStyle } from 'react-native';

import { cardStyles as s } from './styles';

export interface CardProps {
  title?: string;
  subtitle?: string;
  actions?: ReactNode;
  children?: ReactNode;
  style?: StyleProp<ViewStyle>;
  testID?: string;
}

export function Card({ title, subtitle, actions, children, style, testID }: CardProps) {
  return (
    <View style={[s.card, style]} testID={testID}>
      {title || actions ? (
        <View style={s.header}>
          <View style={{ flex: 1 }}>
            {title ? (
              <Text role="heading" aria-level={2} style={s.title}>
                {title}
              </Text>
            ) : null}
            {subtitle ? <Text style={s.subtitle}>{subtitle}</Text> : null}
          </View>
          {actions ? <View style={s.actions}>{actions}</View> : null}
        </View>
      ) : null}
      {children}
    </View>
  );
}
