import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, radius, space } from '../theme';

export const workersStyles = StyleSheet.create({
  name: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.parchment, fontWeight: '600' },
  sub: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.textFaint, marginTop: 2 },
  columns: { flexDirection: 'row', flexWrap: 'wrap', gap: space.lg },
  column: { flexGrow: 1, flexBasis: 340 },
  top: { flexDirection: 'row', alignItems: 'center', justifyContent: 'space-between', marginBottom: space.lg },
  facts: { gap: space.sm },
  fact: { flexDirection: 'row', paddingVertical: 6, borderBottomWidth: 1, borderBottomColor: colors.border },
  factLabel: { width: 150, fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textMuted },
  factValue: { flex: 1, fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.text, wordBreak: 'break-all' },
  chips: { flexDirection: 'row', flexWrap: 'wrap', gap: space.sm },
  chip: {
    flexDirection: 'row',
    borderWidth: 1,
    borderColor: colors.goldDim,
    borderRadius: radius.sm,
    overflow: 'hidden',
  },
  chipKey: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.background, backgroundColor: colors.goldDim, paddingHorizontal: 6, paddingVertical: 3 },
  chipValue: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.goldBright, paddingHorizontal: 6, paddingVertical: 3 },
  none: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textFaint, fontStyle: 'italic' },
  // The history card's charts, side by side while they fit.
  charts: { flexDirection: 'row', flexWrap: 'wrap', gap: space.xl },
  chart: { flexGrow: 1, flexBasis: 260 },
});
