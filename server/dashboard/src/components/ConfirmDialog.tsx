// Asks before something that cannot be undone (regenerating the token, disabling a service or a key).

import { Modal, Text, View } from 'react-native';

import { Button } from './Button';
import { dialogStyles as s } from './styles';

export interface ConfirmDialogProps {
  visible: boolean;
  title: string;
  message: string;
  confirmLabel: string;
  danger?: boolean;
  busy?: boolean;
  onConfirm: () => void;
  onCancel: () => void;
}

export function ConfirmDialog({ visible, title, message, confirmLabel, danger, busy, onConfirm, onCancel }: ConfirmDialogProps) {
  if (!visible) return null;
  // A Modal renders above everything else on the page (on the web: a portal at the end of <body>).
  return (
    <Modal visible transparent animationType="none" onRequestClose={onCancel}>
      <View style={s.overlay} role="alertdialog" aria-label={title} aria-modal>
        <View style={s.dialog}>
          <Text style={s.title}>{title}</Text>
          <Text style={s.message}>{message}</Text>
          <View style={s.buttons}>
            <Button label="Cancel" variant="ghost" onPress={onCancel} disabled={busy} />
            <Button label={confirmLabel} variant={danger ? 'danger' : 'primary'} onPress={onConfirm} busy={busy} />
          </View>
        </View>
      </View>
    </Modal>
  );
}
