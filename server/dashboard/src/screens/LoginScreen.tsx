import { AerekosApiError } from '@aerekos/sdk';
import { useState } from 'react';
import { Text, View } from 'react-native';

import { Button } from '../components/Button';
import { ErrorBanner, InfoBanner } from '../components/ErrorBanner';
import { Field } from '../components/Field';
import { useSession } from '../hooks/useSession';
import { loginStyles as s } from './login.styles';

/** What a failed login says: the wrong-password case in plain words, anything else as it came. */
function loginError(e: unknown): unknown {
  if (e instanceof AerekosApiError && e.status === 401) {
    return new Error('Wrong username or password.');
  }
  return e;
}

export function LoginScreen() {
  const { signIn, signedOutReason } = useSession();
  const [username, setUsername] = useState('admin');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);

  const submit = async () => {
    if (!username || !password) {
      setError(new Error('Enter your username and password.'));
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      await signIn(username, password);
    } catch (e) {
      setError(loginError(e));
      setBusy(false);
    }
  };

  return (
    <View style={s.page} testID="login-screen">
      <View style={s.brand}>
        <Text style={s.crest}>AEREKOS</Text>
        <Text style={s.motto}>YOUR OWN CLOUD</Text>
        <View style={s.ruleRow}>
          <View style={s.ruleLine} />
          <View style={s.ruleDiamond} />
          <View style={s.ruleLine} />
        </View>
      </View>
      <View style={s.panel}>
        <Text role="heading" aria-level={1} style={s.title}>
          Sign in
        </Text>
        {signedOutReason && !error ? <InfoBanner testID="signed-out-reason">{signedOutReason}</InfoBanner> : null}
        <ErrorBanner error={error} testID="login-error" />
        <Field label="Username" value={username} onChangeText={setUsername} autoComplete="username" testID="login-username" onSubmit={submit} />
        <Field
          label="Password"
          value={password}
          onChangeText={setPassword}
          secure
          autoFocus
          autoComplete="current-password"
          testID="login-password"
          onSubmit={submit}
        />
        <View style={s.submit}>
          <Button label="Sign in" variant="primary" onPress={submit} busy={busy} testID="login-submit" />
        </View>
        <Text style={s.hint}>
          The admin's password is in data/admin-password, or AEREKOS_ADMIN_PASSWORD when it was set.
        </Text>
      </View>
    </View>
  );
}
