// Monospaced text: one line with a copy button, or a scrolling block (logs).

import { useState } from 'react';
import { ScrollView, Text, View } from 'react-native';

import { copyText } from '../clipboard';
import { Button } from './Button';
import { codeStyles as s } from './styles';

export function CodeLine({ text, copyLabel = 'Copy', testID }: { text: string; copyLabel?: string; testID?: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <View style={s.wrap}>
      <Text style={s.text} selectable testID={testID}>
        {text}
      </Text>
      <Button
        label={copied ? 'Copied' : copyLabel}
        size="small"
        accessibilityLabel={copyLabel}
        onPress={() => {
          void copyText(text).then((ok) => {
            setCopied(ok);
            if (ok) setTimeout(() => setCopied(false), 1500);
          });
        }}
      />
    </View>
  );
}

export function CodeBlock({ text, testID }: { text: string; testID?: string }) {
  return (
    <ScrollView style={s.block}>
      <Text style={s.blockText} selectable testID={testID}>
        {text}
      </Text>
    </ScrollView>
  );
}
