import { StyleSheet } from 'react-native';

import { space } from '../theme';

export const overviewStyles = StyleSheet.create({
  stats: { flexDirection: 'row', flexWrap: 'wrap', gap: space.lg, marginBottom: space.lg },
  charts: { flexDirection: 'row', flexWrap: 'wrap', gap: space.lg },
  chartCard: { flexGrow: 1, flexBasis: 300 },
  columns: { flexDirection: 'row', flexWrap: 'wrap', gap: space.lg },
  column: { flexGrow: 1, flexBasis: 380 },
  pair: { flexDirection: 'row', gap: space.sm, marginTop: space.sm, flexWrap: 'wrap' },
});
