import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, space } from '../theme';

export const storageStyles = StyleSheet.create({
  columns: { flexDirection: 'row', flexWrap: 'wrap', gap: space.lg, alignItems: 'flex-start' },
  buckets: { flexGrow: 1, flexBasis: 260, maxWidth: 360 },
  browser: { flexGrow: 3, flexBasis: 520 },
  form: { flexDirection: 'row', alignItems: 'flex-end', gap: space.sm, marginBottom: space.md },
  formField: { flex: 1, marginBottom: 0 },
  bucketName: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.parchment, fontWeight: '600' },
  bucketSub: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textFaint, marginTop: 2 },
  crumbs: { flexDirection: 'row', flexWrap: 'wrap', alignItems: 'center', marginBottom: space.md, gap: 2 },
  crumb: { fontFamily: fonts.mono, fontSize: fontSize.sm, color: colors.gold, cursor: 'pointer', paddingVertical: 2, paddingHorizontal: 4 },
  crumbCurrent: { color: colors.parchment, cursor: 'default' },
  crumbSep: { fontFamily: fonts.mono, fontSize: fontSize.sm, color: colors.textFaint },
  toolbar: { flexDirection: 'row', gap: space.sm, alignItems: 'flex-end', marginBottom: space.md, flexWrap: 'wrap' },
  folderForm: { flexDirection: 'row', alignItems: 'flex-end', gap: space.xs, marginLeft: 'auto' },
  folderField: { width: 160, marginBottom: 0 },
  folder: { fontFamily: fonts.mono, fontSize: fontSize.sm, color: colors.goldBright },
  object: { fontFamily: fonts.mono, fontSize: fontSize.sm, color: colors.text },
  rowActions: { flexDirection: 'row', gap: space.xs, justifyContent: 'flex-end' },
  uploads: { marginBottom: space.md },
  more: { marginTop: space.md, alignSelf: 'center' },
});
