import { Pressable, Text, View } from 'react-native';

import { checkboxStyles as s } from './styles';

/** A labelled on/off choice (a filter: "failed only"). */
export function Checkbox({ label, checked, onChange, testID }: { label: string; checked: boolean; onChange(checked: boolean): void; testID?: string }) {
  return (
    <Pressable role="checkbox" aria-checked={checked} aria-label={label} testID={testID} onPress={() => onChange(!checked)} style={s.row}>
      {({ hovered }) => (
        <>
          <View style={[s.box, hovered && s.boxHover, checked && s.boxChecked]}>{checked ? <View style={s.tick} /> : null}</View>
          <Text style={s.label}>{label}</Text>
        </>
      )}
    </Pressable>
  );
}
