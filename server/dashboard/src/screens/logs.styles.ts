import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, radius, space } from '../theme';

export const logsStyles = StyleSheet.create({
  // The filter card: quick picks (service, level), then the typed filters and their buttons.
  pickRow: { flexDirection: 'row', flexWrap: 'wrap', alignItems: 'center', gap: space.xs, marginBottom: space.md },
  pickLabel: { width: 70, fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.2 },
  filters: { flexDirection: 'row', flexWrap: 'wrap', alignItems: 'flex-end', gap: space.md },
  filterField: { flexGrow: 1, flexBasis: 200, marginBottom: 0 },
  filterButtons: { flexDirection: 'row', alignItems: 'center', gap: space.sm },
  chips: { flexDirection: 'row', flexWrap: 'wrap', gap: space.sm, marginTop: space.md },
  chip: {
    flexDirection: 'row',
    alignItems: 'center',
    borderWidth: 1,
    borderColor: colors.goldDim,
    borderRadius: radius.sm,
    overflow: 'hidden',
  },
  chipKey: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.background, backgroundColor: colors.goldDim, paddingHorizontal: 6, paddingVertical: 3 },
  chipValue: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.goldBright, paddingHorizontal: 6, paddingVertical: 3 },
  // The lines card.
  lineActions: { flexDirection: 'row', alignItems: 'center', gap: space.md },
  time: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.text },
  sub: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textFaint, marginTop: 2 },
  service: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.parchment, fontWeight: '600' },
  subMono: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.textFaint, marginTop: 2 },
  stderr: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.warn, marginTop: 2 },
  message: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.text, lineHeight: 17, whiteSpace: 'pre-wrap', wordBreak: 'break-word' },
  none: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textFaint },
  requestLink: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.gold, marginTop: 3, cursor: 'pointer', alignSelf: 'flex-start' },
  requestLinkHover: { color: colors.goldBright, textDecorationLine: 'underline' },
  more: { flexDirection: 'row', justifyContent: 'center', alignItems: 'center', marginTop: space.lg },
  end: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textFaint, fontStyle: 'italic' },
});
