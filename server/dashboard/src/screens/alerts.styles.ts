import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize } from '../theme';

export const alertsStyles = StyleSheet.create({
  name: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.parchment, fontWeight: '600' },
  text: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.text },
  sub: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textFaint, marginTop: 2 },
  mono: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.text, wordBreak: 'break-word' },
  error: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.danger, wordBreak: 'break-word' },
});
