// Styles of the reusable components. Colours and sizes come from the theme.

import { StyleSheet } from 'react-native';

import { colors, fonts, fontSize, radius, space } from '../theme';

export const buttonStyles = StyleSheet.create({
  base: {
    flexDirection: 'row',
    alignItems: 'center',
    justifyContent: 'center',
    paddingVertical: 7,
    paddingHorizontal: space.lg,
    borderRadius: radius.sm,
    borderWidth: 1,
    minHeight: 34,
    cursor: 'pointer',
    transitionProperty: 'background-color, border-color',
    transitionDuration: '120ms',
  },
  primary: { backgroundColor: colors.gold, borderColor: colors.gold },
  primaryHover: { backgroundColor: colors.goldBright, borderColor: colors.goldBright },
  secondary: { backgroundColor: 'transparent', borderColor: colors.goldDim },
  secondaryHover: { backgroundColor: colors.goldFaint, borderColor: colors.gold },
  danger: { backgroundColor: 'transparent', borderColor: colors.danger },
  dangerHover: { backgroundColor: colors.dangerFaint },
  ghost: { backgroundColor: 'transparent', borderColor: 'transparent' },
  ghostHover: { backgroundColor: colors.goldFaint },
  small: { paddingVertical: 3, paddingHorizontal: space.md, minHeight: 26 },
  disabled: { opacity: 0.45, cursor: 'not-allowed' },
  label: { fontFamily: fonts.body, fontSize: fontSize.md, fontWeight: '600', letterSpacing: 0.4 },
  labelSmall: { fontSize: fontSize.sm },
  labelPrimary: { color: colors.background },
  labelSecondary: { color: colors.goldBright },
  labelDanger: { color: colors.danger },
  labelGhost: { color: colors.gold },
  spinner: { marginRight: space.sm },
});

export const cardStyles = StyleSheet.create({
  card: {
    backgroundColor: colors.surface,
    borderWidth: 1,
    borderColor: colors.border,
    borderRadius: radius.md,
    padding: space.lg,
    marginBottom: space.lg,
  },
  header: { flexDirection: 'row', alignItems: 'center', justifyContent: 'space-between', marginBottom: space.md },
  title: {
    fontFamily: fonts.heading,
    fontSize: fontSize.lg,
    color: colors.parchment,
    letterSpacing: 1.2,
  },
  subtitle: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textMuted, marginTop: 2 },
  actions: { flexDirection: 'row', alignItems: 'center', gap: space.sm },
});

export const tableStyles = StyleSheet.create({
  header: {
    flexDirection: 'row',
    paddingVertical: space.sm,
    paddingHorizontal: space.sm,
    borderBottomWidth: 1,
    borderBottomColor: colors.borderStrong,
  },
  headerCell: {
    fontFamily: fonts.body,
    fontSize: fontSize.xs,
    color: colors.goldDim,
    textTransform: 'uppercase',
    letterSpacing: 1.2,
    fontWeight: '600',
  },
  row: {
    flexDirection: 'row',
    alignItems: 'center',
    paddingVertical: 10,
    paddingHorizontal: space.sm,
    borderBottomWidth: 1,
    borderBottomColor: colors.border,
  },
  rowPressable: { cursor: 'pointer' },
  rowHover: { backgroundColor: colors.surfaceHover },
  rowSelected: { backgroundColor: colors.goldFaint },
  cell: { paddingRight: space.sm, minWidth: 0 },
  cellText: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.text },
  empty: { paddingVertical: space.xl, alignItems: 'center' },
  emptyText: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.textFaint, fontStyle: 'italic' },
});

export const badgeStyles = StyleSheet.create({
  badge: {
    flexDirection: 'row',
    alignItems: 'center',
    alignSelf: 'flex-start',
    paddingVertical: 2,
    paddingHorizontal: space.sm,
    borderRadius: 999,
    borderWidth: 1,
  },
  dot: { width: 6, height: 6, borderRadius: 3, marginRight: 6 },
  text: { fontFamily: fonts.body, fontSize: fontSize.xs, fontWeight: '600', letterSpacing: 0.6, textTransform: 'uppercase' },
});

export const dialogStyles = StyleSheet.create({
  overlay: {
    position: 'fixed',
    top: 0,
    left: 0,
    right: 0,
    bottom: 0,
    backgroundColor: colors.overlay,
    alignItems: 'center',
    justifyContent: 'center',
    zIndex: 100,
  },
  dialog: {
    width: 440,
    maxWidth: '92%',
    backgroundColor: colors.surfaceRaised,
    borderWidth: 1,
    borderColor: colors.goldDim,
    borderRadius: radius.md,
    padding: space.xl,
    boxShadow: '0 20px 60px rgba(0,0,0,0.6)',
  },
  title: { fontFamily: fonts.heading, fontSize: fontSize.xl, color: colors.parchment, letterSpacing: 1.2, marginBottom: space.md },
  message: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.text, lineHeight: 21, marginBottom: space.xl },
  messageBeforeContent: { marginBottom: space.lg },
  content: { marginBottom: space.lg },
  buttons: { flexDirection: 'row', justifyContent: 'flex-end', gap: space.sm },
});

export const bannerStyles = StyleSheet.create({
  banner: {
    flexDirection: 'row',
    alignItems: 'flex-start',
    borderWidth: 1,
    borderLeftWidth: 3,
    borderRadius: radius.sm,
    paddingVertical: space.sm,
    paddingHorizontal: space.md,
    marginBottom: space.md,
  },
  error: { borderColor: colors.danger, backgroundColor: colors.dangerFaint },
  info: { borderColor: colors.goldDim, backgroundColor: colors.goldFaint },
  warn: { borderColor: colors.warn, backgroundColor: colors.warnFaint },
  ok: { borderColor: colors.ok, backgroundColor: colors.okFaint },
  body: { flex: 1 },
  text: { flex: 1, fontFamily: fonts.body, fontSize: fontSize.md, lineHeight: 20 },
  errorText: { color: '#f0b3aa' },
  infoText: { color: colors.parchment },
  warnTitle: { color: colors.warn, fontWeight: '600', marginBottom: 2 },
  warnText: { color: colors.parchment },
  okText: { color: colors.parchment },
  retry: { marginLeft: space.md },
});

export const spinnerStyles = StyleSheet.create({
  wrap: { flexDirection: 'row', alignItems: 'center', paddingVertical: space.lg },
  label: { marginLeft: space.sm, fontFamily: fonts.body, fontSize: fontSize.md, color: colors.textMuted, fontStyle: 'italic' },
});

export const chartStyles = StyleSheet.create({
  wrap: { marginTop: space.sm },
  header: { flexDirection: 'row', justifyContent: 'space-between', alignItems: 'baseline', marginBottom: space.sm },
  title: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.2 },
  value: { fontFamily: fonts.heading, fontSize: fontSize.xl, color: colors.goldBright },
  values: { flexDirection: 'row', alignItems: 'baseline', gap: space.sm },
  note: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textFaint },
  plot: {
    flexDirection: 'row',
    alignItems: 'flex-end',
    borderBottomWidth: 1,
    borderBottomColor: colors.goldDim,
    backgroundColor: 'rgba(201, 168, 92, 0.03)',
    gap: 2,
    paddingHorizontal: 2,
  },
  barSlot: { flex: 1, height: '100%', justifyContent: 'flex-end' },
  bar: { width: '100%', borderTopLeftRadius: 1, borderTopRightRadius: 1 },
  gridLine: { position: 'absolute', left: 0, right: 0, height: 1, backgroundColor: colors.border, opacity: 0.6 },
  axis: { flexDirection: 'row', justifyContent: 'space-between', marginTop: 4 },
  axisText: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textFaint },
  empty: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textFaint, fontStyle: 'italic', textAlign: 'center' },
  message: { position: 'absolute', top: 0, left: 0, right: 0, bottom: 0, alignItems: 'center', justifyContent: 'center', paddingHorizontal: space.md },
});

export const historyStyles = StyleSheet.create({
  picker: { flexDirection: 'row', flexWrap: 'wrap', alignItems: 'center', gap: space.xs },
  label: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.2, marginRight: space.xs },
});

export const meterStyles = StyleSheet.create({
  wrap: { marginBottom: space.md },
  labels: { flexDirection: 'row', justifyContent: 'space-between', marginBottom: 4 },
  label: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textMuted },
  value: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.text },
  track: { height: 6, borderRadius: 3, backgroundColor: colors.surfaceRaised, overflow: 'hidden', borderWidth: 1, borderColor: colors.border },
  fill: { height: '100%', borderRadius: 3 },
});

export const statStyles = StyleSheet.create({
  stat: {
    flexGrow: 1,
    flexBasis: 180,
    backgroundColor: colors.surface,
    borderWidth: 1,
    borderColor: colors.border,
    borderTopWidth: 2,
    borderTopColor: colors.goldDim,
    borderRadius: radius.md,
    padding: space.lg,
  },
  label: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.4 },
  value: { fontFamily: fonts.heading, fontSize: fontSize.xxl, color: colors.parchment, marginTop: space.sm },
  detail: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textMuted, marginTop: space.xs },
});

export const fieldStyles = StyleSheet.create({
  wrap: { marginBottom: space.md },
  label: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.2, marginBottom: 6 },
  input: {
    fontFamily: fonts.body,
    fontSize: fontSize.md,
    color: colors.parchment,
    backgroundColor: colors.background,
    borderWidth: 1,
    borderColor: colors.borderStrong,
    borderRadius: radius.sm,
    paddingVertical: 8,
    paddingHorizontal: space.md,
    outlineColor: colors.gold,
  },
  mono: { fontFamily: fonts.mono, fontSize: fontSize.sm },
});

export const screenStyles = StyleSheet.create({
  screen: { flex: 1 },
  content: { padding: space.xxl, maxWidth: 1200, width: '100%' },
  header: { marginBottom: space.xl },
  kicker: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.goldDim, textTransform: 'uppercase', letterSpacing: 3 },
  titleRow: { flexDirection: 'row', alignItems: 'center', justifyContent: 'space-between', marginTop: space.xs },
  title: { fontFamily: fonts.heading, fontSize: fontSize.display, color: colors.parchment, letterSpacing: 2 },
  subtitle: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.textMuted, marginTop: space.sm, maxWidth: 720, lineHeight: 20 },
  rule: { height: 1, backgroundColor: colors.goldDim, opacity: 0.5, marginTop: space.lg, width: 120 },
});

export const codeStyles = StyleSheet.create({
  wrap: {
    flexDirection: 'row',
    alignItems: 'center',
    backgroundColor: colors.background,
    borderWidth: 1,
    borderColor: colors.border,
    borderRadius: radius.sm,
    paddingVertical: space.sm,
    paddingHorizontal: space.md,
    gap: space.sm,
  },
  text: { flex: 1, fontFamily: fonts.mono, fontSize: fontSize.sm, color: colors.goldBright, wordBreak: 'break-all' },
  block: {
    backgroundColor: colors.background,
    borderWidth: 1,
    borderColor: colors.border,
    borderRadius: radius.sm,
    padding: space.md,
    maxHeight: 320,
  },
  blockText: { fontFamily: fonts.mono, fontSize: fontSize.xs, color: colors.text, whiteSpace: 'pre-wrap', lineHeight: 17 },
});

export const textStyles = StyleSheet.create({
  body: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.text, lineHeight: 20 },
  muted: { fontFamily: fonts.body, fontSize: fontSize.sm, color: colors.textMuted },
  mono: { fontFamily: fonts.mono, fontSize: fontSize.sm, color: colors.text },
  label: { fontFamily: fonts.body, fontSize: fontSize.xs, color: colors.textMuted, textTransform: 'uppercase', letterSpacing: 1.2 },
  heading: { fontFamily: fonts.heading, fontSize: fontSize.lg, color: colors.parchment, letterSpacing: 1.2 },
});

export const passwordStyles = StyleSheet.create({
  wrap: { marginBottom: space.md },
  field: { marginBottom: 0 },
  hint: { fontFamily: fonts.body, fontSize: fontSize.xs, marginTop: 5 },
});

export const checkboxStyles = StyleSheet.create({
  row: { flexDirection: 'row', alignItems: 'center', gap: space.sm, cursor: 'pointer', paddingVertical: 6 },
  box: {
    width: 16,
    height: 16,
    borderRadius: radius.sm,
    borderWidth: 1,
    borderColor: colors.borderStrong,
    backgroundColor: colors.background,
    alignItems: 'center',
    justifyContent: 'center',
  },
  boxHover: { borderColor: colors.gold },
  boxChecked: { borderColor: colors.gold, backgroundColor: colors.gold },
  tick: { width: 6, height: 6, borderRadius: 1, backgroundColor: colors.background },
  label: { fontFamily: fonts.body, fontSize: fontSize.md, color: colors.text },
});
