import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, space } from '../theme';

export const servicesStyles = StyleSheet.create({
  name: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.parchment, fontWeight: '600' },
  description: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textMuted, marginTop: 2 },
  actions: { flexDirection: 'row', flexWrap: 'wrap', alignItems: 'flex-end', gap: space.md, marginBottom: space.lg },
  replicas: { width: 120, marginBottom: 0 },
  specRow: { flexDirection: 'row', flexWrap: 'wrap', gap: space.xl, marginBottom: space.lg },
  spec: { minWidth: 110 },
  specLabel: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.2 },
  specValue: { fontFamily: fonts.heading, fontSize: fontSize.lg, color: colors.parchment, marginTop: 4 },
  reason: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.danger, marginTop: 2 },
  logsHeader: { flexDirection: 'row', alignItems: 'center', justifyContent: 'space-between', marginBottom: space.sm },
  logsTitle: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textMuted },
  logsButtons: { flexDirection: 'row', alignItems: 'center', gap: space.xs },
  // The history card's charts, side by side while they fit.
  charts: { flexDirection: 'row', flexWrap: 'wrap', gap: space.xl },
  chart: { flexGrow: 1, flexBasis: 220 },
});
