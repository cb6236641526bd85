import { Text, TextInput, View, type StyleProp, type ViewStyle } from 'react-native';

import { colors } from '../theme';
import { fieldStyles as s } from './styles';

export interface FieldProps {
  label: string;
  value: string;
  onChangeText(text: string): void;
  onSubmit?: () => void;
  placeholder?: string;
  secure?: boolean;
  mono?: boolean;
  multiline?: boolean;
  numeric?: boolean;
  autoFocus?: boolean;
  autoComplete?: string;
  testID?: string;
  style?: StyleProp<ViewStyle>;
}

export function Field({ label, value, onChangeText, onSubmit, placeholder, secure, mono, multiline, numeric, autoFocus, autoComplete, testID, style }: FieldProps) {
  return (
    <View style={[s.wrap, style]}>
      <Text style={s.label}>{label}</Text>
      <TextInput
        aria-label={label}
        testID={testID}
        value={value}
        onChangeText={onChangeText}
        onSubmitEditing={onSubmit}
        placeholder={placeholder}
        placeholderTextColor={colors.textFaint}
        secureTextEntry={secure}
        autoCapitalize="none"
        autoCorrect={false}
        autoFocus={autoFocus}
        autoComplete={autoComplete}
        multiline={multiline}
        numberOfLines={multiline ? 3 : undefined}
        inputMode={numeric ? 'numeric' : 'text'}
        style={[s.input, mono && s.mono]}
      />
    </View>
  );
}
