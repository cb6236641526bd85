import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, space } from '../theme';

export const keysStyles = StyleSheet.create({
  name: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.parchment, fontWeight: '600' },
  sub: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.textFaint, marginTop: 2 },
  rowActions: { flexDirection: 'row', gap: space.xs, justifyContent: 'flex-end' },
  form: { flexDirection: 'row', flexWrap: 'wrap', alignItems: 'flex-end', gap: space.md },
  formField: { flexGrow: 1, flexBasis: 200, marginBottom: 0 },
  columns: { flexDirection: 'row', flexWrap: 'wrap', gap: space.lg },
  keysColumn: { flexGrow: 3, flexBasis: 560 },
  tryColumn: { flexGrow: 2, flexBasis: 340 },
  tryButtons: { flexDirection: 'row', gap: space.sm, marginBottom: space.md },
  result: { marginBottom: space.md },
  resultLabel: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.2, marginBottom: 6 },
  keyPick: { flexDirection: 'row', flexWrap: 'wrap', gap: space.xs, marginBottom: space.md },
  note: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textMuted, lineHeight: 19 },
});
