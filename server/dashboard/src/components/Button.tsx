import { ActivityIndicator, Pressable, Text } from 'react-native';

import { colors } from '../theme';
import { buttonStyles as s } from './styles';

export type ButtonVariant = 'primary' | 'secondary' | 'danger' | 'ghost';

export interface ButtonProps {
  label: string;
  onPress: () => void;
  variant?: ButtonVariant;
  size?: 'normal' | 'small';
  disabled?: boolean;
  /** Shows a spinner and ignores presses. */
  busy?: boolean;
  testID?: string;
  accessibilityLabel?: string;
}

export function Button({ label, onPress, variant = 'secondary', size = 'normal', disabled, busy, testID, accessibilityLabel }: ButtonProps) {
  const off = disabled || busy;
  return (
    <Pressable
      role="button"
      testID={testID}
      aria-label={accessibilityLabel ?? label}
      aria-disabled={off}
      disabled={off}
      onPress={onPress}
      style={({ hovered }) => [
        s.base,
        s[variant],
        hovered && !off && s[`${variant}Hover` as const],
        size === 'small' && s.small,
        off && s.disabled,
      ]}
    >
      {busy ? <ActivityIndicator size={12} color={variant === 'primary' ? colors.background : colors.gold} style={s.spinner} /> : null}
      <Text
        style={[
          s.label,
          size === 'small' && s.labelSmall,
          variant === 'primary' ? s.labelPrimary : variant === 'danger' ? s.labelDanger : variant === 'ghost' ? s.labelGhost : s.labelSecondary,
        ]}
      >
        {label}
      </Text>
    </Pressable>
  );
}
