// A new password: a secure field, and under it its length against the conductor's bounds (in
// UTF-8 bytes, as the conductor counts), so the 12-byte minimum is seen before it refuses.

import { Text, View, type StyleProp, type ViewStyle } from 'react-native';

import { utf8Bytes } from '../format';
import { tones, type Tone } from '../theme';
import { Field } from './Field';
import { passwordStyles as s } from './styles';

/** The conductor's bounds on a password set through the API (400 weak_password outside them). */
export const PASSWORD_MIN_BYTES = 12;
export const PASSWORD_MAX_BYTES = 1024;

export function passwordHint(password: string): { text: string; tone: Tone } {
  const n = utf8Bytes(password);
  if (n === 0) return { text: `At least ${PASSWORD_MIN_BYTES} bytes: a passphrase of a few words is fine.`, tone: 'muted' };
  if (n < PASSWORD_MIN_BYTES) return { text: `${n} of at least ${PASSWORD_MIN_BYTES} bytes`, tone: 'warn' };
  if (n > PASSWORD_MAX_BYTES) return { text: `${n} bytes: at most ${PASSWORD_MAX_BYTES}`, tone: 'danger' };
  return { text: `${n} bytes: long enough`, tone: 'ok' };
}

export interface PasswordFieldProps {
  label: string;
  value: string;
  onChangeText(text: string): void;
  onSubmit?: () => void;
  autoFocus?: boolean;
  autoComplete?: string;
  testID?: string;
  style?: StyleProp<ViewStyle>;
}

export function PasswordField({ label, value, onChangeText, onSubmit, autoFocus, autoComplete = 'new-password', testID, style }: PasswordFieldProps) {
  const hint = passwordHint(value);
  return (
    <View style={[s.wrap, style]}>
      <Field label={label} value={value} onChangeText={onChangeText} onSubmit={onSubmit} secure autoFocus={autoFocus} autoComplete={autoComplete} testID={testID} style={s.field} />
      <Text style={[s.hint, { color: tones[hint.tone].fg }]} testID={testID ? `${testID}-hint` : undefined} aria-live="polite">
        {hint.text}
      </Text>
    </View>
  );
}
