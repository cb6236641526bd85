// secrets_manager, through the conductor's gateway: the secrets (names and metadata), a secret's
// versions and staging labels, and what admins do — create a secret, write a new value (typed
// into a secure field, written with check-and-set), and reveal one version's value. Values are
// never read until "Reveal" is pressed (each reveal is a read, which the service audits), and are
// forgotten when hidden or when the screen changes. Viewers see names and metadata only.

import { AerekosApiError } from '@aerekos/sdk';
import { useState } from 'react';
import { Text, View } from 'react-native';

import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { CodeBlock, CodeLine } from '../components/Code';
import { ErrorBanner, InfoBanner, WarnBanner } from '../components/ErrorBanner';
import { Field } from '../components/Field';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { ago, dateTime } from '../format';
import { useAction } from '../hooks/useAsync';
import { MAX_LISTED, useSecret, useSecretActions, useSecrets, type RevealedValue, type SecretSummary, type SecretVersion } from '../hooks/useSecrets';
import { useSession } from '../hooks/useSession';
import { useRouter } from '../router';
import { tones } from '../theme';
import { secretsStyles as s } from './secrets.styles';

/** What stands for a value that is not revealed: the same for every value, so it tells nothing (not even the length). */
const HIDDEN = '••••••••';

/** secrets_manager missing from the catalog (404 from the conductor) or not running (503). */
function secretsError(e: unknown): unknown {
  if (e instanceof AerekosApiError && e.status === 404 && e.code === 'not_found') {
    return new Error('secrets_manager is not part of this platform: the conductor has no such service.');
  }
  if (e instanceof AerekosApiError && (e.status === 503 || e.status === 502)) {
    return new Error(`secrets_manager is not reachable right now (${e.message}). Check it on the Services screen.`);
  }
  if (e instanceof AerekosApiError && e.code === 'cas_mismatch') {
    return new Error(`${e.message}. Someone wrote a version since this screen loaded: look at the versions, then write again.`);
  }
  return e;
}

export function SecretsScreen({ selected }: { selected?: string }) {
  const { isAdmin } = useSession();
  const list = useSecrets();
  const actions = useSecretActions();
  const { navigate } = useRouter();
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [value, setValue] = useState('');

  const create = useAction(async () => {
    if (!name.trim()) throw new Error('Give the secret a name, e.g. apps/shop/db-password.');
    const created = await actions.create(name.trim(), description.trim(), value);
    setName('');
    setDescription('');
    setValue('');
    await list.reload();
    navigate({ name: 'secrets', secret: created.name });
  });

  return (
    <Screen
      kicker="secrets_manager"
      title="Secrets"
      subtitle="Versioned secrets for apps and services, sealed under key_manager's keys. Values stay hidden until revealed, and every reveal is recorded in the service's audit log."
      testID="secrets-screen"
    >
      {isAdmin ? (
        <Card title="New secret">
          <View style={s.form}>
            <Field label="Name" value={name} onChangeText={setName} placeholder="e.g. apps/shop/db-password" mono style={s.formField} testID="secret-name" />
            <Field label="Description" value={description} onChangeText={setDescription} placeholder="optional" style={s.formField} testID="secret-description" />
            <Field
              label="Value"
              value={value}
              onChangeText={setValue}
              placeholder="optional: version 1"
              secure
              autoComplete="off"
              style={s.formField}
              testID="secret-value"
              onSubmit={() => void create.run()}
            />
            <Button label="Create secret" variant="primary" onPress={() => void create.run()} busy={create.running} testID="secret-create" />
          </View>
        </Card>
      ) : null}
      <ErrorBanner error={create.error ? secretsError(create.error) : undefined} testID="secret-create-error" />
      <View style={s.columns}>
        <Card
          title="Secrets"
          subtitle={list.data ? (list.data.truncated ? `the first ${MAX_LISTED}` : `${list.data.secrets.length} in all`) : undefined}
          style={s.list}
        >
          <ErrorBanner error={list.error ? secretsError(list.error) : undefined} onRetry={() => void list.reload()} />
          {!list.data && !list.error ? <Spinner label="Loading secrets…" /> : null}
          {list.data ? (
            <Table
              testID="secrets-table"
              data={list.data.secrets}
              keyOf={(x) => x.name}
              selectedKey={selected}
              onPress={(x) => navigate({ name: 'secrets', secret: x.name })}
              empty={isAdmin ? 'No secrets yet: create one above.' : 'No secrets yet.'}
              columns={[
                {
                  key: 'name',
                  title: 'Secret',
                  flex: 2.6,
                  render: (x: SecretSummary) => (
                    <View>
                      <Text style={s.name} numberOfLines={1} testID={`secret-row-${x.name}`}>
                        {x.name}
                      </Text>
                      {x.description ? (
                        <Text style={s.sub} numberOfLines={1}>
                          {x.description}
                        </Text>
                      ) : null}
                    </View>
                  ),
                },
                { key: 'current', title: 'Current', flex: 1.2, render: (x) => (x.current_version !== undefined ? `v${x.current_version}` : 'no value') },
                { key: 'updated', title: 'Updated', flex: 1.2, render: (x) => ago(x.updated_at) },
                {
                  key: 'deletion',
                  title: 'Deletion',
                  flex: 1.6,
                  render: (x) =>
                    x.deletion_date ? (
                      <View>
                        <StatusBadge status="pending_deletion" label="scheduled" testID={`secret-deletion-${x.name}`} />
                        <Text style={s.sub}>{dateTime(x.deletion_date)}</Text>
                      </View>
                    ) : (
                      '—'
                    ),
                },
              ]}
            />
          ) : null}
        </Card>
        {selected ? (
          <SecretDetail key={selected} name={selected} onChanged={() => void list.reload()} />
        ) : (
          <Card style={s.detail}>
            <InfoBanner>Select a secret to see its versions and labels.</InfoBanner>
          </Card>
        )}
      </View>
    </Screen>
  );
}

function SecretDetail({ name, onChanged }: { name: string; onChanged: () => void }) {
  const { isAdmin } = useSession();
  const secret = useSecret(name);
  const actions = useSecretActions();
  const [value, setValue] = useState('');
  // Revealed values, by version: only in this component's state, gone when it unmounts.
  const [revealed, setRevealed] = useState<RevealedValue[]>([]);
  const [revealing, setRevealing] = useState<number | undefined>(undefined);

  const d = secret.data;
  const scheduled = Boolean(d?.deletion_date);

  const write = useAction(async () => {
    if (!d) return;
    if (!value) throw new Error('Type the new value first.');
    // Check-and-set on the latest version this screen shows: a write someone made since is not overwritten unseen.
    await actions.putText(name, value, d.latest_version);
    setValue('');
    await secret.reload();
    onChanged();
  });
  const reveal = useAction(async (version: number) => {
    setRevealing(version);
    try {
      const shown = await actions.reveal(name, version);
      setRevealed((r) => [...r.filter((x) => x.version !== version), shown].sort((a, b) => b.version - a.version));
    } finally {
      setRevealing(undefined);
    }
  });
  const hide = (version: number) => setRevealed((r) => r.filter((x) => x.version !== version));
  const restore = useAction(async () => {
    await actions.restore(name);
    await secret.reload();
    onChanged();
  });

  const readable = (v: SecretVersion) => !v.deleted_at && !v.destroyed_at;

  return (
    <Card title={name} subtitle={d?.description || undefined} style={s.detail} testID="secret-detail">
      <ErrorBanner error={secret.error ? secretsError(secret.error) : undefined} onRetry={() => void secret.reload()} />
      {!d && !secret.error ? <Spinner label="Loading the secret…" /> : null}
      {d ? (
        <>
          <View style={s.specRow}>
            <Spec label="Current" value={d.current_version !== undefined ? `v${d.current_version}` : 'none'} testID="secret-current" />
            <Spec label="Latest" value={`v${d.latest_version}`} />
            <Spec label="Keeps" value={`${d.max_versions} versions`} />
            <Spec label="Updated" value={ago(d.updated_at)} />
            <Spec label="Encryption key" value={d.encryption_key} mono />
            {d.rotation ? <Spec label="Rotation" value={`every ${d.rotation.interval_secs} s via ${d.rotation.service}`} mono /> : null}
          </View>
          {Object.keys(d.tags).length > 0 ? (
            <View style={s.tags}>
              {Object.entries(d.tags).map(([k, v]) => (
                <Text key={k} style={s.tag}>
                  {k}={v}
                </Text>
              ))}
            </View>
          ) : null}
          {scheduled ? (
            <>
              <WarnBanner title="Scheduled for deletion" testID="secret-scheduled">
                {`It goes for good at ${dateTime(d.deletion_date)}. Until then nothing reads or writes it${isAdmin ? '; restore it to use it again.' : '.'}`}
              </WarnBanner>
              {isAdmin ? (
                <View style={s.write}>
                  <Button label="Restore" onPress={() => void restore.run()} busy={restore.running} testID="secret-restore" />
                </View>
              ) : null}
              <ErrorBanner error={restore.error ? secretsError(restore.error) : undefined} />
            </>
          ) : null}
          {isAdmin && !scheduled ? (
            <View style={s.write}>
              <Field
                label="New value"
                value={value}
                onChangeText={setValue}
                placeholder={`becomes v${d.latest_version + 1}, labelled AWSCURRENT`}
                secure
                autoComplete="off"
                style={s.writeField}
                testID="secret-new-value"
                onSubmit={() => void write.run()}
              />
              <Button label="Write version" variant="primary" onPress={() => void write.run()} busy={write.running} testID="secret-write" />
            </View>
          ) : null}
          <ErrorBanner error={write.error ? secretsError(write.error) : undefined} testID="secret-write-error" />
          {!isAdmin ? <InfoBanner testID="secret-viewer-note">Values are for admins: a viewer sees names, versions and labels, never a value.</InfoBanner> : null}
          <Text style={s.sectionTitle}>Versions</Text>
          <Table
            testID="secret-versions"
            data={d.versions}
            keyOf={(v) => String(v.version)}
            empty="No value yet."
            columns={[
              { key: 'version', title: 'Version', flex: 1, render: (v: SecretVersion) => `v${v.version}` },
              {
                key: 'labels',
                title: 'Labels',
                flex: 1.8,
                render: (v: SecretVersion) => (
                  <View style={s.labels} testID={`secret-labels-${v.version}`}>
                    {v.labels.map((l) => (
                      <LabelChip key={l} label={l} />
                    ))}
                  </View>
                ),
              },
              {
                key: 'written',
                title: 'Written',
                flex: 1.5,
                render: (v: SecretVersion) => (
                  <View>
                    <Text style={s.note}>{ago(v.created_at)}</Text>
                    <Text style={s.sub}>{v.created_by}</Text>
                  </View>
                ),
              },
              {
                key: 'state',
                title: 'State',
                flex: 1,
                render: (v: SecretVersion) =>
                  v.destroyed_at ? <StatusBadge status="destroyed" tone="danger" /> : v.deleted_at ? <StatusBadge status="deleted" tone="muted" /> : <StatusBadge status="live" />,
              },
              ...(isAdmin
                ? [
                    {
                      key: 'value',
                      title: 'Value',
                      flex: 2,
                      render: (v: SecretVersion) => {
                        if (!readable(v)) return <Text style={s.muted}>—</Text>;
                        const shown = revealed.some((x) => x.version === v.version);
                        return (
                          <View style={s.valueCell}>
                            {shown ? (
                              <Button label="Hide" size="small" variant="ghost" onPress={() => hide(v.version)} testID={`secret-hide-${v.version}`} />
                            ) : (
                              <>
                                <Text style={s.hidden}>{HIDDEN}</Text>
                                <Button
                                  label="Reveal"
                                  size="small"
                                  onPress={() => void reveal.run(v.version)}
                                  busy={revealing === v.version}
                                  disabled={scheduled}
                                  testID={`secret-reveal-${v.version}`}
                                />
                              </>
                            )}
                          </View>
                        );
                      },
                    },
                  ]
                : []),
            ]}
          />
          <ErrorBanner error={reveal.error ? secretsError(reveal.error) : undefined} testID="secret-reveal-error" />
          {revealed.length > 0 ? (
            <View style={s.revealed}>
              {revealed.map((r) => (
                <View key={r.version} style={s.revealedItem}>
                  <View style={s.revealedHeader}>
                    <Text style={s.revealedLabel}>
                      {`Version ${r.version}`}
                      {r.kind === 'json' ? ' · JSON' : r.kind === 'binary' ? ' · bytes (not UTF-8 text), base64' : ''}
                    </Text>
                    <Button label="Hide" size="small" variant="ghost" onPress={() => hide(r.version)} />
                  </View>
                  {r.kind === 'json' ? <CodeBlock text={r.text} testID={`secret-value-${r.version}`} /> : <CodeLine text={r.text} testID={`secret-value-${r.version}`} />}
                </View>
              ))}
            </View>
          ) : null}
        </>
      ) : null}
    </Card>
  );
}

function Spec({ label, value, mono, testID }: { label: string; value: string; mono?: boolean; testID?: string }) {
  return (
    <View style={s.spec}>
      <Text style={s.specLabel}>{label}</Text>
      <Text style={mono ? s.specValueMono : s.specValue} testID={testID}>
        {value}
      </Text>
    </View>
  );
}

/** A staging label: AWSCURRENT stands out, AWSPREVIOUS is quieter, custom ones are gold. */
function LabelChip({ label }: { label: string }) {
  const t = tones[label === 'AWSCURRENT' ? 'ok' : label === 'AWSPREVIOUS' ? 'muted' : 'gold'];
  return <Text style={[s.tag, { color: t.fg, borderColor: t.fg, backgroundColor: t.bg }]}>{label}</Text>;
}
