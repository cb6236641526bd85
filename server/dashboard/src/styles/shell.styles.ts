import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, space } from '../theme';

export const shellStyles = StyleSheet.create({
  root: { flex: 1, flexDirection: 'row', backgroundColor: colors.background, minHeight: '100vh' },
  sidebar: {
    width: 232,
    backgroundColor: colors.sidebar,
    borderRightWidth: 1,
    borderRightColor: colors.border,
    paddingVertical: space.xl,
    justifyContent: 'space-between',
    position: 'sticky',
    top: 0,
    height: '100vh',
  },
  brand: { paddingHorizontal: space.xl, marginBottom: space.xxl },
  brandName: { fontFamily: fonts.heading, fontSize: 24, color: colors.gold, letterSpacing: 6, fontWeight: '600' },
  brandTag: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textFaint, letterSpacing: 4, textTransform: 'uppercase', marginTop: 4 },
  brandRule: { height: 1, backgroundColor: colors.goldDim, opacity: 0.5, marginTop: space.lg },
  nav: { flex: 1 },
  navItem: {
    paddingVertical: 10,
    paddingHorizontal: space.xl,
    borderLeftWidth: 2,
    borderLeftColor: 'transparent',
    cursor: 'pointer',
  },
  navItemHover: { backgroundColor: colors.surface },
  navItemActive: { borderLeftColor: colors.gold, backgroundColor: colors.goldFaint },
  navText: { fontFamily: fonts.heading, fontSize: fontSize.md, color: colors.textMuted, letterSpacing: 1.6 },
  navTextActive: { color: colors.goldBright },
  footer: { paddingHorizontal: space.xl, paddingTop: space.lg, borderTopWidth: 1, borderTopColor: colors.border },
  user: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.parchment, marginBottom: 6 },
  userRow: { flexDirection: 'row', alignItems: 'center', justifyContent: 'space-between', marginBottom: space.md },
  userActions: { alignItems: 'flex-start', gap: 2 },
  main: { flex: 1, minWidth: 0 },
});
