import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, space } from '../theme';

export const settingsStyles = StyleSheet.create({
  columns: { flexDirection: 'row', flexWrap: 'wrap', gap: space.lg },
  column: { flexGrow: 1, flexBasis: 360 },
  label: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.2, marginBottom: 6, marginTop: space.md },
  note: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textMuted, lineHeight: 19, marginTop: space.sm },
  buttons: { flexDirection: 'row', gap: space.sm, marginTop: space.lg },
  fact: { flexDirection: 'row', paddingVertical: 6, borderBottomWidth: 1, borderBottomColor: colors.border, alignItems: 'center' },
  factLabel: { width: 130, fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textMuted },
  factValue: { flex: 1, fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.text },
});
