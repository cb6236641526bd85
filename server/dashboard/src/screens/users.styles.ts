import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, radius, space } from '../theme';

export const usersStyles = StyleSheet.create({
  name: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.parchment, fontWeight: '600' },
  sub: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.textFaint, marginTop: 2 },
  you: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.gold, marginTop: 2, letterSpacing: 0.6 },
  text: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.text },
  faint: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.textFaint, fontStyle: 'italic' },
  mono: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.text },
  rowActions: { flexDirection: 'row', flexWrap: 'wrap', justifyContent: 'flex-end', gap: space.xs },
  // The new-user form: the fields side by side (wrapping), the button under them.
  form: { flexDirection: 'row', flexWrap: 'wrap', alignItems: 'flex-start', gap: space.lg },
  formField: { flexGrow: 1, flexBasis: 220, marginBottom: 0 },
  formButtons: { flexDirection: 'row', justifyContent: 'flex-end', marginTop: space.sm },
  // Admin or viewer, as radio buttons.
  roleGroup: { marginBottom: 0 },
  roleLabel: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.2, marginBottom: 6 },
  roles: { flexDirection: 'row', gap: space.xs },
  role: {
    paddingVertical: 8,
    paddingHorizontal: space.md,
    borderWidth: 1,
    borderColor: colors.borderStrong,
    borderRadius: radius.sm,
    cursor: 'pointer',
  },
  roleHover: { backgroundColor: colors.surfaceHover },
  rolePicked: { borderColor: colors.gold, backgroundColor: colors.goldFaint },
  roleText: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.textMuted },
  rolePickedText: { color: colors.goldBright, fontWeight: '600' },
  roleDetail: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textFaint, marginTop: 5 },
  note: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textMuted, lineHeight: 19 },
});
