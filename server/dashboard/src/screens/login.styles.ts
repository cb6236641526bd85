import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, radius, space } from '../theme';

export const loginStyles = StyleSheet.create({
  page: {
    flex: 1,
    minHeight: '100vh',
    alignItems: 'center',
    justifyContent: 'center',
    backgroundColor: colors.background,
    backgroundImage: 'radial-gradient(ellipse at 50% 30%, rgba(201,168,92,0.10) 0%, rgba(18,17,16,0) 60%)',
    padding: space.xl,
  },
  brand: { alignItems: 'center', marginBottom: space.xxl },
  crest: { fontFamily: fonts.heading, fontSize: 44, color: colors.gold, letterSpacing: 12, fontWeight: '600' },
  motto: { fontFamily: fonts.heading, fontSize: fontSize.sm, color: colors.goldDim, letterSpacing: 5, marginTop: space.sm },
  ruleRow: { flexDirection: 'row', alignItems: 'center', marginTop: space.lg, gap: space.sm },
  ruleLine: { width: 64, height: 1, backgroundColor: colors.goldDim },
  ruleDiamond: { width: 6, height: 6, backgroundColor: colors.gold, transform: [{ rotate: '45deg' }] },
  panel: {
    width: 380,
    maxWidth: '100%',
    backgroundColor: colors.surface,
    borderWidth: 1,
    borderColor: colors.border,
    borderTopWidth: 2,
    borderTopColor: colors.gold,
    borderRadius: radius.md,
    padding: space.xxl,
  },
  title: { fontFamily: fonts.heading, fontSize: fontSize.xl, color: colors.parchment, letterSpacing: 2, marginBottom: space.xl, textAlign: 'center' },
  submit: { marginTop: space.sm },
  hint: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textFaint, marginTop: space.xl, textAlign: 'center', lineHeight: 18 },
});
