// key_manager, through the conductor's gateway: the keys, and what admins do with them — create,
// rotate, disable/enable, and a round trip of a test string through encrypt and decrypt.

import { AerekosApiError } from '@aerekos/sdk';
import { useState } from 'react';
import { Text, View } from 'react-native';

import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { CodeLine } from '../components/Code';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { ErrorBanner, InfoBanner } from '../components/ErrorBanner';
import { Field } from '../components/Field';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { ago } from '../format';
import { useAction } from '../hooks/useAsync';
import { useKeyActions, useKeys, type Key } from '../hooks/useKeys';
import { useSession } from '../hooks/useSession';
import { keysStyles as s } from './keys.styles';

/** key_manager not running (the gateway has no healthy instance) reads better than a 503 code. */
function keysError(e: unknown): unknown {
  if (e instanceof AerekosApiError && (e.status === 503 || e.status === 502)) {
    return new Error(`key_manager is not reachable right now (${e.message}). Check it on the Services screen.`);
  }
  return e;
}

export function KeysScreen() {
  const { isAdmin } = useSession();
  const keys = useKeys();
  const actions = useKeyActions();
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [confirmDisable, setConfirmDisable] = useState<Key | undefined>(undefined);

  const act = useAction(async (what: 'create' | 'rotate' | 'disable' | 'enable', key?: Key) => {
    if (what === 'create') {
      if (!name.trim()) throw new Error('Give the key a name.');
      await actions.create(name.trim(), description.trim());
      setName('');
      setDescription('');
    } else if (key) {
      await actions[what](key.id);
    }
    await keys.reload();
  });

  return (
    <Screen kicker="key_manager" title="Keys" subtitle="Encryption keys held by key_manager. Key material never leaves it: services and people send data to be encrypted or decrypted." testID="keys-screen">
      {isAdmin ? (
        <Card title="New key">
          <View style={s.form}>
            <Field label="Name" value={name} onChangeText={setName} placeholder="e.g. backups" style={s.formField} testID="key-name" onSubmit={() => void act.run('create')} />
            <Field label="Description" value={description} onChangeText={setDescription} placeholder="optional" style={s.formField} testID="key-description" />
            <Button label="Create key" variant="primary" onPress={() => void act.run('create')} busy={act.running} testID="key-create" />
          </View>
        </Card>
      ) : null}
      <ErrorBanner error={act.error ? keysError(act.error) : undefined} testID="key-action-error" />
      <View style={s.columns}>
        <Card title="Keys" subtitle={keys.data ? `${keys.data.length} in all` : undefined} style={s.keysColumn}>
          <ErrorBanner error={keys.error ? keysError(keys.error) : undefined} onRetry={() => void keys.reload()} />
          {!keys.data && !keys.error ? <Spinner label="Loading keys…" /> : null}
          {keys.data ? (
            <Table
              testID="keys-table"
              data={keys.data}
              keyOf={(k) => k.id}
              empty={isAdmin ? 'No keys yet: create one above.' : 'No keys yet.'}
              columns={[
                {
                  key: 'name',
                  title: 'Key',
                  flex: 2,
                  render: (k) => (
                    <View>
                      <Text style={s.name}>{k.name}</Text>
                      <Text style={s.sub} numberOfLines={1}>
                        {k.description || k.id}
                      </Text>
                    </View>
                  ),
                },
                { key: 'state', title: 'State', flex: 1.3, render: (k) => <StatusBadge status={k.state} testID={`key-state-${k.name}`} /> },
                { key: 'version', title: 'Version', flex: 0.8, render: (k) => `v${k.latest_version}` },
                { key: 'updated', title: 'Changed', render: (k) => ago(k.updated_at) },
                ...(isAdmin
                  ? [
                      {
                        key: 'actions',
                        title: '',
                        flex: 2,
                        render: (k: Key) => (
                          <View style={s.rowActions}>
                            {k.state === 'enabled' ? (
                              <>
                                <Button label="Rotate" size="small" onPress={() => void act.run('rotate', k)} testID={`key-rotate-${k.name}`} />
                                <Button label="Disable" size="small" variant="danger" onPress={() => setConfirmDisable(k)} testID={`key-disable-${k.name}`} />
                              </>
                            ) : k.state === 'disabled' ? (
                              <Button label="Enable" size="small" onPress={() => void act.run('enable', k)} testID={`key-enable-${k.name}`} />
                            ) : null}
                          </View>
                        ),
                      },
                    ]
                  : []),
              ]}
            />
          ) : null}
        </Card>
        {isAdmin ? <TryKey keys={(keys.data ?? []).filter((k) => k.state === 'enabled')} /> : null}
      </View>
      <ConfirmDialog
        visible={confirmDisable !== undefined}
        title={`Disable ${confirmDisable?.name ?? 'key'}?`}
        message="Nothing can be encrypted or decrypted with it until it is enabled again."
        confirmLabel="Disable"
        danger
        busy={act.running}
        onCancel={() => setConfirmDisable(undefined)}
        onConfirm={() => void act.run('disable', confirmDisable).then(() => setConfirmDisable(undefined))}
      />
    </Screen>
  );
}

/** Encrypt a test string with a key, then decrypt the ciphertext again. */
function TryKey({ keys }: { keys: Key[] }) {
  const actions = useKeyActions();
  const [picked, setPicked] = useState<string | undefined>(undefined);
  const [text, setText] = useState('Nothing is true, everything is permitted.');
  const [ciphertext, setCiphertext] = useState('');
  const [plaintext, setPlaintext] = useState<string | undefined>(undefined);
  const key = keys.find((k) => k.id === picked) ?? keys[0];

  const encrypt = useAction(async () => {
    if (!key) return;
    setPlaintext(undefined);
    setCiphertext(await actions.encrypt(key.id, text));
  });
  const decrypt = useAction(async () => {
    if (!key) return;
    setPlaintext(await actions.decrypt(key.id, ciphertext));
  });

  return (
    <Card title="Try a key" subtitle="Encrypt a string, then decrypt it again" style={s.tryColumn} testID="try-key">
      {keys.length === 0 ? <InfoBanner>Create (or enable) a key to try it.</InfoBanner> : null}
      {key ? (
        <>
          <View style={s.keyPick}>
            {keys.map((k) => (
              <Button key={k.id} label={k.name} size="small" variant={k.id === key.id ? 'primary' : 'secondary'} onPress={() => setPicked(k.id)} testID={`try-pick-${k.name}`} />
            ))}
          </View>
          <Field label="Text" value={text} onChangeText={setText} testID="try-plaintext" />
          <View style={s.tryButtons}>
            <Button label="Encrypt" variant="primary" onPress={() => void encrypt.run()} busy={encrypt.running} testID="try-encrypt" />
            <Button label="Decrypt" onPress={() => void decrypt.run()} busy={decrypt.running} disabled={!ciphertext} testID="try-decrypt" />
          </View>
          <ErrorBanner error={encrypt.error ?? decrypt.error} />
          {ciphertext ? (
            <View style={s.result}>
              <Text style={s.resultLabel}>Ciphertext</Text>
              <CodeLine text={ciphertext} testID="try-ciphertext" />
            </View>
          ) : null}
          {plaintext !== undefined ? (
            <View style={s.result}>
              <Text style={s.resultLabel}>Decrypted</Text>
              <CodeLine text={plaintext} testID="try-decrypted" />
            </View>
          ) : null}
        </>
      ) : null}
    </Card>
  );
}
