import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, space } from '../theme';

export const secretsStyles = StyleSheet.create({
  form: { flexDirection: 'row', flexWrap: 'wrap', alignItems: 'flex-end', gap: space.md },
  formField: { flexGrow: 1, flexBasis: 200, marginBottom: 0 },
  columns: { flexDirection: 'row', flexWrap: 'wrap', gap: space.lg, alignItems: 'flex-start' },
  list: { flexGrow: 2, flexBasis: 460 },
  detail: { flexGrow: 3, flexBasis: 560 },
  name: { fontFamily: fonts.mono, fontSize: fontSize.sm, color: colors.parchment, fontWeight: '600' },
  sub: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textFaint, marginTop: 2 },
  muted: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textFaint },
  specRow: { flexDirection: 'row', flexWrap: 'wrap', gap: space.xl, marginBottom: space.lg },
  spec: { minWidth: 110 },
  specLabel: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.2 },
  specValue: { fontFamily: fonts.heading, fontSize: fontSize.lg, color: colors.parchment, marginTop: 4 },
  specValueMono: { fontFamily: fonts.mono, fontSize: fontSize.sm, color: colors.parchment, marginTop: 6 },
  tags: { flexDirection: 'row', flexWrap: 'wrap', gap: space.xs, marginBottom: space.lg },
  tag: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.textMuted, borderWidth: 1, borderColor: colors.border, borderRadius: 3, paddingHorizontal: 6, paddingVertical: 2 },
  sectionTitle: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.2, marginBottom: space.sm },
  write: { flexDirection: 'row', flexWrap: 'wrap', alignItems: 'flex-end', gap: space.md, marginBottom: space.lg },
  writeField: { flexGrow: 1, flexBasis: 260, marginBottom: 0 },
  labels: { flexDirection: 'row', flexWrap: 'wrap', gap: space.xs },
  hidden: { fontFamily: fonts.mono, fontSize: fontSize.sm, color: colors.textFaint, letterSpacing: 2 },
  valueCell: { flexDirection: 'row', alignItems: 'center', gap: space.sm, justifyContent: 'flex-end' },
  revealed: { marginTop: space.lg },
  revealedItem: { marginBottom: space.md },
  revealedHeader: { flexDirection: 'row', alignItems: 'center', justifyContent: 'space-between', marginBottom: 6 },
  revealedLabel: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.2 },
  note: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textMuted, lineHeight: 19 },
});
