// Lists as rows with columns: a header row and rows of cells with flex widths.

import type { ReactNode } from 'react';
import { FlatList, Pressable, Text, View } from 'react-native';

import { tableStyles as s } from './styles';

export interface Column<T> {
  key: string;
  title: string;
  /** Relative width (flex); default 1. */
  flex?: number;
  render(item: T): ReactNode;
}

export interface TableProps<T> {
  columns: Column<T>[];
  data: T[];
  keyOf(item: T): string;
  onPress?: (item: T) => void;
  selectedKey?: string;
  empty?: string;
  testID?: string;
}

/** A cell's content: strings become body text. */
export function Cell({ children }: { children: ReactNode }) {
  return typeof children === 'string' || typeof children === 'number' ? (
    <Text style={s.cellText} numberOfLines={1}>
      {children}
    </Text>
  ) : (
    <>{children}</>
  );
}

export function Table<T>({ columns, data, keyOf, onPress, selectedKey, empty = 'Nothing here yet.', testID }: TableProps<T>) {
  return (
    <View testID={testID} role="table">
      <View style={s.header} role="row">
        {columns.map((c) => (
          <View key={c.key} style={[s.cell, { flex: c.flex ?? 1 }]} role="columnheader">
            <Text style={s.headerCell}>{c.title}</Text>
          </View>
        ))}
      </View>
      <FlatList
        data={data}
        keyExtractor={(item) => keyOf(item)}
        scrollEnabled={false}
        ListEmptyComponent={
          <View style={s.empty}>
            <Text style={s.emptyText}>{empty}</Text>
          </View>
        }
        renderItem={({ item }) => {
          const cells = columns.map((c) => (
            <View key={c.key} style={[s.cell, { flex: c.flex ?? 1 }]} role="cell">
              <Cell>{c.render(item)}</Cell>
            </View>
          ));
          const selected = selectedKey !== undefined && keyOf(item) === selectedKey;
          return onPress ? (
            <Pressable
              role="row"
              onPress={() => onPress(item)}
              style={({ hovered }) => [s.row, s.rowPressable, hovered && s.rowHover, selected && s.rowSelected]}
            >
              {cells}
            </Pressable>
          ) : (
            <View role="row" style={[s.row, selected && s.rowSelected]}>
              {cells}
            </View>
          );
        }}
      />
    </View>
  );
}
