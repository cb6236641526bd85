import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, space } from '../theme';

export const auditStyles = StyleSheet.create({
  filters: { flexDirection: 'row', flexWrap: 'wrap', alignItems: 'flex-end', gap: space.md },
  filterField: { flexGrow: 1, flexBasis: 200, marginBottom: 0 },
  filterButtons: { flexDirection: 'row', alignItems: 'center', gap: space.sm },
  time: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.text },
  sub: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textFaint, marginTop: 2 },
  mono: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.text },
  monoFaint: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.textMuted },
  more: { flexDirection: 'row', justifyContent: 'center', alignItems: 'center', marginTop: space.lg },
  end: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textFaint, fontStyle: 'italic' },
});
