// A screen's frame: kicker, serif title, subtitle, a gold rule, then the content.

import type { ReactNode } from 'react';
import { ScrollView, Text, View } from 'react-native';

import { screenStyles as s } from './styles';

export interface ScreenProps {
  kicker?: string;
  title: string;
  subtitle?: string;
  actions?: ReactNode;
  children: ReactNode;
  testID?: string;
}

export function Screen({ kicker, title, subtitle, actions, children, testID }: ScreenProps) {
  return (
    <ScrollView style={s.screen} contentContainerStyle={s.content} testID={testID}>
      <View style={s.header}>
        {kicker ? <Text style={s.kicker}>{kicker}</Text> : null}
        <View style={s.titleRow}>
          <Text role="heading" aria-level={1} style={s.title}>
            {title}
          </Text>
          {actions ? <View>{actions}</View> : null}
        </View>
        {subtitle ? <Text style={s.subtitle}>{subtitle}</Text> : null}
        <View style={s.rule} />
      </View>
      {children}
    </ScrollView>
  );
}
