// The part of the React Native API the dashboard uses, typed for the compiler. At build time
// Vite resolves `react-native` to react-native-web (vite.config.ts); the full `react-native`
// package (and @types/react-native-web, which pulls it in) is not installed on purpose.

declare module 'react-native' {
  import type { ComponentType, ReactElement, ReactNode, Ref } from 'react';

  type Dimension = number | string;
  type ColorValue = string;

  export interface ViewStyle {
    [property: string]: unknown;
    flex?: number;
    flexDirection?: 'row' | 'column' | 'row-reverse' | 'column-reverse';
    flexWrap?: 'wrap' | 'nowrap';
    alignItems?: 'flex-start' | 'flex-end' | 'center' | 'stretch' | 'baseline';
    justifyContent?: 'flex-start' | 'flex-end' | 'center' | 'space-between' | 'space-around' | 'space-evenly';
    width?: Dimension;
    height?: Dimension;
    backgroundColor?: ColorValue;
  }
  export interface TextStyle extends ViewStyle {
    color?: ColorValue;
    fontFamily?: string;
    fontSize?: number;
    fontWeight?: 'normal' | 'bold' | '100' | '200' | '300' | '400' | '500' | '600' | '700' | '800' | '900';
  }
  export type StyleProp<T> = T | null | undefined | false | ReadonlyArray<StyleProp<T>>;

  export interface AccessibilityProps {
    [aria: `aria-${string}`]: unknown;
    accessibilityLabel?: string;
    accessibilityRole?: string;
    role?: string;
    'aria-label'?: string;
    'aria-live'?: 'polite' | 'assertive' | 'off';
    'aria-busy'?: boolean;
    'aria-disabled'?: boolean;
    testID?: string;
    nativeID?: string;
    id?: string;
  }

  export interface ViewProps extends AccessibilityProps {
    children?: ReactNode;
    style?: StyleProp<ViewStyle>;
    pointerEvents?: 'auto' | 'none' | 'box-none' | 'box-only';
    onLayout?: (event: { nativeEvent: { layout: { width: number; height: number; x: number; y: number } } }) => void;
  }
  export const View: ComponentType<ViewProps>;

  export interface TextProps extends AccessibilityProps {
    children?: ReactNode;
    style?: StyleProp<TextStyle>;
    numberOfLines?: number;
    selectable?: boolean;
    onPress?: () => void;
    href?: string;
    hrefAttrs?: { target?: string; rel?: string; download?: boolean | string };
  }
  export const Text: ComponentType<TextProps>;

  export interface PressableState {
    pressed: boolean;
    hovered?: boolean;
    focused?: boolean;
  }
  export interface PressableProps extends AccessibilityProps {
    children?: ReactNode | ((state: PressableState) => ReactNode);
    style?: StyleProp<ViewStyle> | ((state: PressableState) => StyleProp<ViewStyle>);
    onPress?: () => void;
    disabled?: boolean;
    href?: string;
  }
  export const Pressable: ComponentType<PressableProps>;

  export interface TextInputProps extends AccessibilityProps {
    value?: string;
    defaultValue?: string;
    onChangeText?: (text: string) => void;
    onSubmitEditing?: () => void;
    placeholder?: string;
    placeholderTextColor?: ColorValue;
    secureTextEntry?: boolean;
    autoCapitalize?: 'none' | 'sentences' | 'words' | 'characters';
    autoComplete?: string;
    autoCorrect?: boolean;
    autoFocus?: boolean;
    editable?: boolean;
    multiline?: boolean;
    numberOfLines?: number;
    inputMode?: 'text' | 'numeric' | 'decimal' | 'none';
    style?: StyleProp<TextStyle>;
  }
  export const TextInput: ComponentType<TextInputProps>;

  export interface ScrollViewProps extends ViewProps {
    contentContainerStyle?: StyleProp<ViewStyle>;
    horizontal?: boolean;
  }
  export const ScrollView: ComponentType<ScrollViewProps>;

  export interface ListRenderItemInfo<T> {
    item: T;
    index: number;
  }
  export interface FlatListProps<T> extends ViewProps {
    data: ReadonlyArray<T> | null | undefined;
    renderItem: (info: ListRenderItemInfo<T>) => ReactElement | null;
    keyExtractor?: (item: T, index: number) => string;
    ListEmptyComponent?: ReactElement | null;
    ListHeaderComponent?: ReactElement | null;
    ItemSeparatorComponent?: ComponentType<unknown> | null;
    scrollEnabled?: boolean;
    contentContainerStyle?: StyleProp<ViewStyle>;
  }
  export function FlatList<T>(props: FlatListProps<T> & { ref?: Ref<unknown> }): ReactElement;

  export interface ActivityIndicatorProps extends ViewProps {
    color?: ColorValue;
    size?: 'small' | 'large' | number;
    animating?: boolean;
  }
  export const ActivityIndicator: ComponentType<ActivityIndicatorProps>;

  export interface ModalProps {
    children?: ReactNode;
    visible?: boolean;
    transparent?: boolean;
    animationType?: 'none' | 'fade' | 'slide';
    onRequestClose?: () => void;
  }
  export const Modal: ComponentType<ModalProps>;

  type NamedStyles<T> = { [P in keyof T]: ViewStyle | TextStyle };
  export const StyleSheet: {
    create<T extends NamedStyles<T>>(styles: T): T;
    hairlineWidth: number;
    absoluteFillObject: ViewStyle;
  };

  export const Platform: { OS: 'web' | 'ios' | 'android'; select<T>(options: { web?: T; default?: T }): T };

  export const Linking: { openURL(url: string): Promise<void> };

  export const AppRegistry: {
    registerComponent(name: string, getComponent: () => ComponentType<object>): void;
    runApplication(name: string, options: { rootTag: HTMLElement | null; initialProps?: object }): void;
  };

  export function useWindowDimensions(): { width: number; height: number };
}
