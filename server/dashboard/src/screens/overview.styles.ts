import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, space } from '../theme';

export const overviewStyles = StyleSheet.create({
  stats: { flexDirection: 'row', flexWrap: 'wrap', gap: space.lg, marginBottom: space.lg },
  charts: { flexDirection: 'row', flexWrap: 'wrap', gap: space.lg },
  chartCard: { flexGrow: 1, flexBasis: 240 },
  // Above the charts: their heading and the range picker.
  historyBar: { flexDirection: 'row', flexWrap: 'wrap', alignItems: 'center', justifyContent: 'space-between', gap: space.md, marginBottom: space.md },
  historyTitle: { fontFamily: fonts.heading, fontSize: fontSize.lg, color: colors.parchment, letterSpacing: 1 },
  none: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textFaint, fontStyle: 'italic' },
  columns: { flexDirection: 'row', flexWrap: 'wrap', gap: space.lg },
  column: { flexGrow: 1, flexBasis: 380 },
  pair: { flexDirection: 'row', gap: space.sm, marginTop: space.sm, flexWrap: 'wrap' },
});
