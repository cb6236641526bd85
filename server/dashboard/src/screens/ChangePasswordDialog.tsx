// Changing one's own password (every user, from the sidebar): the current one and a new one. The
// conductor signs out every session of the user and answers with a new one, which this tab keeps.

import { AerekosApiError } from '@aerekos/sdk';
import { useState } from 'react';

import { ConfirmDialog } from '../components/ConfirmDialog';
import { ErrorBanner, SuccessBanner } from '../components/ErrorBanner';
import { Field } from '../components/Field';
import { PasswordField } from '../components/PasswordField';
import { useAction } from '../hooks/useAsync';
import { useSession } from '../hooks/useSession';

/** The wrong current password in plain words; anything else as the conductor said it. */
function changeError(e: unknown): unknown {
  if (e instanceof AerekosApiError && e.code === 'wrong_password') return new Error('That is not your current password.');
  return e;
}

export function ChangePasswordDialog({ onClose }: { onClose(): void }) {
  const { changePassword } = useSession();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [done, setDone] = useState(false);
  const change = useAction(async () => {
    if (!current) throw new Error('Enter your current password.');
    await changePassword(current, next);
    setCurrent('');
    setNext('');
    setDone(true);
  });
  const submit = () => void change.run();

  if (done) {
    return (
      <ConfirmDialog visible testID="change-password-dialog" title="Password changed" message="Your password is changed." confirmLabel="Done" hideCancel onConfirm={onClose} onCancel={onClose}>
        <SuccessBanner testID="change-password-done">Your other sessions, in other tabs and on other devices, were signed out. This one goes on with a new session.</SuccessBanner>
      </ConfirmDialog>
    );
  }
  return (
    <ConfirmDialog
      visible
      testID="change-password-dialog"
      title="Change your password"
      message="Give your current password and the new one. Every session of yours is signed out, in other tabs and on other devices too; this one goes on."
      confirmLabel="Change password"
      busy={change.running}
      confirmDisabled={!current || !next}
      onCancel={onClose}
      onConfirm={submit}
    >
      <Field label="Current password" value={current} onChangeText={setCurrent} secure autoFocus autoComplete="current-password" testID="current-password" onSubmit={submit} />
      <PasswordField label="New password" value={next} onChangeText={setNext} onSubmit={submit} testID="new-password" />
      <ErrorBanner error={change.error ? changeError(change.error) : undefined} testID="change-password-error" />
    </ConfirmDialog>
  );
}
