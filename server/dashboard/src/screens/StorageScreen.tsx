// storage_manager, through the conductor's gateway: buckets, and a browser of a bucket's objects
// with "folders" by `/` prefix; uploads with progress, downloads, deletes.

import { AerekosApiError } from '@aerekos/sdk';
import { useState } from 'react';
import { Pressable, Text, View } from 'react-native';

import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { ErrorBanner, InfoBanner } from '../components/ErrorBanner';
import { Field } from '../components/Field';
import { Meter } from '../components/Meter';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { Table } from '../components/Table';
import { pickFiles } from '../filePicker';
import { ago, bytes } from '../format';
import { useAction } from '../hooks/useAsync';
import { useSession } from '../hooks/useSession';
import { DELIMITER, useBuckets, useObjects, useStorageActions, type UploadProgress } from '../hooks/useStorage';
import { useRouter } from '../router';
import { storageStyles as s } from './storage.styles';

/** storage_manager missing from the catalog (404 from the conductor) or not running (503). */
function storageError(e: unknown): unknown {
  if (e instanceof AerekosApiError && e.status === 404 && e.code === 'not_found') {
    return new Error('storage_manager is not part of this platform yet: the conductor has no such service.');
  }
  if (e instanceof AerekosApiError && (e.status === 503 || e.status === 502)) {
    return new Error(`storage_manager is not reachable right now (${e.message}). Check it on the Services screen.`);
  }
  return e;
}

export function StorageScreen({ bucket, prefix }: { bucket?: string; prefix: string }) {
  const { isAdmin } = useSession();
  const buckets = useBuckets();
  const actions = useStorageActions();
  const { navigate } = useRouter();
  const [name, setName] = useState('');
  const [confirmDelete, setConfirmDelete] = useState<string | undefined>(undefined);

  const act = useAction(async (what: 'create' | 'delete', target?: string) => {
    if (what === 'create') {
      if (!name.trim()) throw new Error('Give the bucket a name.');
      const created = await actions.createBucket(name.trim());
      setName('');
      await buckets.reload();
      navigate({ name: 'storage', bucket: created.name });
    } else if (target) {
      await actions.deleteBucket(target);
      setConfirmDelete(undefined);
      await buckets.reload();
      if (bucket === target) navigate({ name: 'storage' });
    }
  });

  return (
    <Screen kicker="storage_manager" title="Storage" subtitle="Buckets of objects, S3-style. Keys with '/' show as folders." testID="storage-screen">
      <View style={s.columns}>
        <Card title="Buckets" style={s.buckets}>
          {isAdmin ? (
            <View style={s.form}>
              <Field label="New bucket" value={name} onChangeText={setName} placeholder="e.g. photos" style={s.formField} testID="bucket-name" onSubmit={() => void act.run('create')} />
              <Button label="Create" variant="primary" onPress={() => void act.run('create')} busy={act.running} testID="bucket-create" />
            </View>
          ) : null}
          <ErrorBanner error={act.error ? storageError(act.error) : undefined} testID="bucket-action-error" />
          <ErrorBanner error={buckets.error ? storageError(buckets.error) : undefined} onRetry={() => void buckets.reload()} />
          {!buckets.data && !buckets.error ? <Spinner label="Loading buckets…" /> : null}
          {buckets.data ? (
            <Table
              testID="buckets-table"
              data={buckets.data}
              keyOf={(b) => b.name}
              selectedKey={bucket}
              onPress={(b) => navigate({ name: 'storage', bucket: b.name })}
              empty="No buckets yet."
              columns={[
                {
                  key: 'name',
                  title: 'Bucket',
                  flex: 3,
                  render: (b) => (
                    <View>
                      <Text style={s.bucketName}>{b.name}</Text>
                      <Text style={s.bucketSub}>
                        created {ago(b.created_at)}
                        {b.default_encryption_key ? ` · encrypted with ${b.default_encryption_key}` : ''}
                      </Text>
                    </View>
                  ),
                },
                ...(isAdmin
                  ? [{ key: 'delete', title: '', flex: 1, render: (b: { name: string }) => <Button label="Delete" size="small" variant="danger" onPress={() => setConfirmDelete(b.name)} testID={`bucket-delete-${b.name}`} /> }]
                  : []),
              ]}
            />
          ) : null}
        </Card>
        {bucket ? <ObjectBrowser key={bucket} bucket={bucket} prefix={prefix} /> : (
          <Card style={s.browser}>
            <InfoBanner>Select a bucket to browse its objects.</InfoBanner>
          </Card>
        )}
      </View>
      <ConfirmDialog
        visible={confirmDelete !== undefined}
        title={`Delete bucket ${confirmDelete ?? ''}?`}
        message="Only an empty bucket can be deleted: delete its objects first."
        confirmLabel="Delete bucket"
        danger
        busy={act.running}
        onCancel={() => setConfirmDelete(undefined)}
        onConfirm={() => void act.run('delete', confirmDelete)}
      />
    </Screen>
  );
}

function ObjectBrowser({ bucket, prefix }: { bucket: string; prefix: string }) {
  const { isAdmin } = useSession();
  const listing = useObjects(bucket, prefix);
  const actions = useStorageActions();
  const { navigate } = useRouter();
  const [uploads, setUploads] = useState<UploadProgress[]>([]);
  const [confirmDelete, setConfirmDelete] = useState<string | undefined>(undefined);
  const [folder, setFolder] = useState('');

  // A folder is only a key prefix: "new folder" opens it (empty) so uploads land inside it.
  const openFolder = () => {
    const name = folder.trim().replace(/^\/+|\/+$/g, '');
    if (!name) return;
    setFolder('');
    navigate({ name: 'storage', bucket, prefix: `${prefix}${name}${DELIMITER}` });
  };

  const upload = useAction(async () => {
    const files = await pickFiles();
    for (const file of files) {
      const key = prefix + file.name;
      setUploads((u) => [...u.filter((x) => x.name !== key), { name: key, sent: 0, total: file.size }]);
      await actions.upload(bucket, key, file, (sent, total) =>
        setUploads((u) => u.map((x) => (x.name === key ? { ...x, sent, total } : x))),
      );
    }
    await listing.reload();
    setTimeout(() => setUploads((u) => u.filter((x) => x.sent < x.total)), 3000);
  });
  const act = useAction(async (what: 'download' | 'delete', key: string) => {
    if (what === 'download') await actions.download(bucket, key);
    else {
      await actions.deleteObject(bucket, key);
      setConfirmDelete(undefined);
      await listing.reload();
    }
  });

  // The breadcrumb: the bucket, then each folder of the prefix.
  const parts = prefix.split(DELIMITER).filter(Boolean);
  const crumbs = [{ label: bucket, prefix: '' }, ...parts.map((p, i) => ({ label: p, prefix: parts.slice(0, i + 1).join(DELIMITER) + DELIMITER }))];
  type Entry = { kind: 'folder'; key: string } | { kind: 'object'; key: string; size: number; type: string; modified: string };
  const entries: Entry[] = [
    ...listing.folders.map((key): Entry => ({ kind: 'folder', key })),
    ...listing.objects.map((o): Entry => ({ kind: 'object', key: o.key, size: o.size, type: o.content_type, modified: o.last_modified })),
  ];

  return (
    <Card title="Objects" subtitle={`in ${bucket}`} style={s.browser} testID="object-browser">
      <View style={s.crumbs} testID="breadcrumbs">
        {crumbs.map((c, i) => {
          const current = i === crumbs.length - 1;
          return (
            <View key={c.prefix} style={{ flexDirection: 'row', alignItems: 'center' }}>
              {i > 0 ? <Text style={s.crumbSep}>/</Text> : null}
              <Pressable role="link" onPress={() => !current && navigate({ name: 'storage', bucket, prefix: c.prefix })}>
                <Text style={[s.crumb, current && s.crumbCurrent]}>{c.label}</Text>
              </Pressable>
            </View>
          );
        })}
      </View>
      <View style={s.toolbar}>
        {isAdmin ? <Button label={prefix ? `Upload into ${prefix}` : 'Upload files'} variant="primary" onPress={() => void upload.run()} busy={upload.running} testID="object-upload" /> : null}
        <Button label="Refresh" variant="ghost" onPress={() => void listing.reload()} />
        {isAdmin ? (
          <View style={s.folderForm}>
            <Field label="New folder" value={folder} onChangeText={setFolder} placeholder="name" onSubmit={openFolder} style={s.folderField} testID="folder-name" />
            <Button label="Open" size="small" onPress={openFolder} testID="folder-open" />
          </View>
        ) : null}
      </View>
      {uploads.length > 0 ? (
        <View style={s.uploads} testID="upload-progress">
          {uploads.map((u) => (
            <Meter key={u.name} kind="progress" label={u.name} used={u.sent} total={u.total || 1} detail={u.sent >= u.total ? `uploaded · ${bytes(u.total)}` : `${bytes(u.sent)} of ${bytes(u.total)}`} />
          ))}
        </View>
      ) : null}
      <ErrorBanner error={upload.error ? storageError(upload.error) : undefined} testID="upload-error" />
      <ErrorBanner error={act.error ? storageError(act.error) : undefined} testID="object-action-error" />
      <ErrorBanner error={listing.error ? storageError(listing.error) : undefined} onRetry={() => void listing.reload()} />
      {listing.loading && !listing.data ? <Spinner label="Listing objects…" /> : null}
      {listing.data ? (
        <Table
          testID="objects-table"
          data={entries}
          keyOf={(e) => `${e.kind}:${e.key}`}
          onPress={(e) => (e.kind === 'folder' ? navigate({ name: 'storage', bucket, prefix: e.key }) : undefined)}
          empty={prefix ? 'This folder is empty.' : 'This bucket is empty.'}
          columns={[
            {
              key: 'name',
              title: 'Name',
              flex: 3,
              render: (e) =>
                e.kind === 'folder' ? (
                  <Text style={s.folder}>▸ {e.key.slice(prefix.length)}</Text>
                ) : (
                  <Text style={s.object} numberOfLines={1}>
                    {e.key.slice(prefix.length)}
                  </Text>
                ),
            },
            { key: 'size', title: 'Size', render: (e) => (e.kind === 'object' ? bytes(e.size) : 'folder') },
            { key: 'type', title: 'Type', flex: 1.2, render: (e) => (e.kind === 'object' ? e.type : '') },
            { key: 'modified', title: 'Modified', flex: 1, render: (e) => (e.kind === 'object' ? ago(e.modified) : '') },
            {
              key: 'actions',
              title: '',
              flex: 2.2,
              render: (e) =>
                e.kind === 'object' ? (
                  <View style={s.rowActions}>
                    <Button label="Download" size="small" onPress={() => void act.run('download', e.key)} testID={`object-download-${e.key}`} />
                    {isAdmin ? <Button label="Delete" size="small" variant="danger" onPress={() => setConfirmDelete(e.key)} testID={`object-delete-${e.key}`} /> : null}
                  </View>
                ) : null,
            },
          ]}
        />
      ) : null}
      {listing.hasMore ? (
        <View style={s.more}>
          <Button label="Load more" variant="ghost" onPress={() => void listing.loadMore()} />
        </View>
      ) : null}
      <ConfirmDialog
        visible={confirmDelete !== undefined}
        title="Delete this object?"
        message={`${confirmDelete ?? ''} is removed from ${bucket} for good.`}
        confirmLabel="Delete"
        danger
        busy={act.running}
        onCancel={() => setConfirmDelete(undefined)}
        onConfirm={() => void act.run('delete', confirmDelete ?? '')}
      />
    </Card>
  );
}
