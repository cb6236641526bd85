// Asks before something that cannot be undone (regenerating the token, disabling a service or a key),
// or before something that needs a choice first (`children`: e.g. the worker to move a service to).

import type { ReactNode } from 'react';
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
  /** The confirm button is greyed out (nothing chosen yet, nothing to choose). */
  confirmDisabled?: boolean;
  /** Shown between the message and the buttons: choices, an error of the last attempt. */
  children?: ReactNode;
  /** Only the confirm button (the dialog is done: it says what came of it). */
  hideCancel?: boolean;
  testID?: string;
  onConfirm: () => void;
  onCancel: () => void;
}

export function ConfirmDialog({ visible, title, message, confirmLabel, danger, busy, confirmDisabled, children, hideCancel, testID, onConfirm, onCancel }: ConfirmDialogProps) {
  if (!visible) return null;
  // A Modal renders above everything else on the page (on the web: a portal at the end of <body>).
  return (
    <Modal visible transparent animationType="none" onRequestClose={onCancel}>
      <View style={s.overlay} role="alertdialog" aria-label={title} aria-modal testID={testID}>
        <View style={s.dialog}>
          <Text style={s.title}>{title}</Text>
          <Text style={[s.message, children ? s.messageBeforeContent : null]}>{message}</Text>
          {children ? <View style={s.content}>{children}</View> : null}
          <View style={s.buttons}>
            {hideCancel ? null : <Button label="Cancel" variant="ghost" onPress={onCancel} disabled={busy} />}
            <Button label={confirmLabel} variant={danger ? 'danger' : 'primary'} onPress={onConfirm} busy={busy} disabled={confirmDisabled} />
          </View>
        </View>
      </View>
    </Modal>
  );
}
