// Volumes: each stateful service's data, the worker holding it (the service runs only there), its
// size, backups and old copies; admins back a volume up now, move a service with its data to
// another worker, or restore it from a backup (what to do when the worker holding its data is gone
// for good), and follow the move or restore step by step. A selected volume shows its backups;
// below, the recent moves and restores.

import type { Worker } from '@aerekos/sdk';
import { useEffect, useState } from 'react';
import { Pressable, Text, View } from 'react-native';

import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { ErrorBanner, InfoBanner, SuccessBanner, WarnBanner } from '../components/ErrorBanner';
import { Meter } from '../components/Meter';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { ago, bytes, dateTime, shortId } from '../format';
import { useAction } from '../hooks/useAsync';
import { useSession } from '../hooks/useSession';
import {
  MOVE_STEPS,
  backupEnded,
  moveEnded,
  restoreSteps,
  useBackupProgress,
  useBackups,
  useMoveProgress,
  useMoves,
  useVolumeActions,
  useVolumes,
  type Backup,
  type BackupState,
  type MoveState,
  type Volume,
  type VolumeMove,
} from '../hooks/useVolumes';
import { useWorkers } from '../hooks/useWorkers';
import { useRouter } from '../router';
import type { Tone } from '../theme';
import { volumesStyles as s } from './volumes.styles';

/** What a move is doing at each step, for people. */
const STEP_TEXT: Record<MoveState, string> = {
  stopping: 'Stopping the service on its worker…',
  copying: 'Copying its data straight to the new worker…',
  starting: 'Starting it on the new worker…',
  cleaning: 'It is healthy there; deleting the old copy…',
  done: 'Done.',
  failed: 'Failed.',
};

/** The same for a restore: the data comes from the backup, and the old copy is left alone. */
const RESTORE_STEP_TEXT: Record<MoveState, string> = {
  ...STEP_TEXT,
  stopping: 'Stopping the service on its current worker (its copy there is kept)…',
  copying: 'Copying the backup’s data from where it is kept to the new worker…',
  starting: 'Starting it on the new worker with the backup’s data…',
};

const STEP_LABEL: Record<MoveState, string> = {
  stopping: 'stop',
  copying: 'copy',
  starting: 'start',
  cleaning: 'clean up',
  done: 'done',
  failed: 'failed',
};

function moveTone(state: MoveState): Tone {
  return state === 'done' ? 'ok' : state === 'failed' ? 'danger' : 'info';
}

function backupTone(state: BackupState): Tone {
  return state === 'done' ? 'ok' : state === 'failed' ? 'danger' : 'info';
}

/** A move or restore being followed: the steps it goes through, and the backup of a restore. */
interface Followed {
  move: VolumeMove;
  volume: Volume;
  steps: MoveState[];
  backup?: Backup;
}

export function VolumesScreen({ selected }: { selected?: string }) {
  const { isAdmin } = useSession();
  const { navigate } = useRouter();
  const volumes = useVolumes();
  const moves = useMoves();
  const workers = useWorkers();
  const actions = useVolumeActions();
  // The volume whose move dialog is open, the backup whose restore dialog is open, and the move
  // or restore being followed.
  const [moving, setMoving] = useState<Volume | undefined>(undefined);
  const [restoring, setRestoring] = useState<{ backup: Backup; volume: Volume } | undefined>(undefined);
  const [started, setStarted] = useState<Followed | undefined>(undefined);
  const progress = useMoveProgress(started?.move);
  // Back up now: the volume last asked for, and its backup (followed until done or failed).
  const [backupOf, setBackupOf] = useState<string | undefined>(undefined);
  const [backingUp, setBackingUp] = useState<Backup | undefined>(undefined);
  const backup = useBackupProgress(backingUp);
  const backupNow = useAction(async (v: Volume) => {
    setBackupOf(v.name);
    setBackingUp(undefined);
    setBackingUp(await actions.backup(v.name));
  });

  // When the followed move ends, the volume's holder (or not) and the list of moves change.
  const endedState = progress.move && moveEnded(progress.move) ? progress.move.state : undefined;
  useEffect(() => {
    if (!endedState) return;
    void volumes.reload();
    void moves.reload();
  }, [endedState]);
  // When the followed backup ends, the volume's last backup changes.
  const backupEndedState = backup.backup && backupEnded(backup.backup) ? backup.backup.state : undefined;
  useEffect(() => {
    if (backupEndedState) void volumes.reload();
  }, [backupEndedState]);

  const workerName = (id: string): string => workers.data?.find((w) => w.id === id)?.name ?? shortId(id);
  // Services with a move or restore under way: their Move… and Restore… buttons wait for it to end.
  const underWay = new Map((moves.data ?? []).filter((m) => !moveEnded(m)).map((m) => [m.service, m]));
  if (progress.move && !moveEnded(progress.move)) underWay.set(progress.move.service, progress.move);
  const backupRunning = (v: Volume): boolean => backupOf === v.name && (backupNow.running || (backup.backup !== undefined && !backupEnded(backup.backup)));
  const selectedVolume = selected ? volumes.data?.find((v) => v.name === selected) : undefined;

  return (
    <Screen
      kicker="Stateful data"
      title="Volumes"
      subtitle="Each stateful service keeps its data on one worker and runs only there; its backups are kept on another worker. Admins can back a volume up now, move a service with its data, or restore it from a backup."
      testID="volumes-screen"
    >
      {started && progress.move ? (
        <MoveProgress
          move={progress.move}
          error={progress.error}
          volume={started.volume}
          steps={started.steps}
          backup={started.backup}
          workerName={workerName}
          onDismiss={() => setStarted(undefined)}
        />
      ) : null}

      <Card title="Volumes" subtitle={volumes.data ? `${volumes.data.length} in all · select one to see its backups` : undefined}>
        <ErrorBanner error={volumes.error} onRetry={() => void volumes.reload()} />
        {!volumes.data && !volumes.error ? <Spinner label="Loading volumes…" /> : null}
        {volumes.data ? (
          <Table
            testID="volumes-table"
            data={volumes.data}
            keyOf={(v) => v.name}
            selectedKey={selected}
            onPress={(v) => navigate({ name: 'volumes', volume: v.name })}
            empty="No stateful service has data yet."
            columns={[
              {
                key: 'name',
                title: 'Volume',
                flex: 1.2,
                render: (v) => (
                  <View>
                    <Text style={s.name}>{v.name}</Text>
                    <Text style={s.sub}>created {ago(v.created_at)}</Text>
                  </View>
                ),
              },
              { key: 'service', title: 'Service', flex: 1.1, render: (v) => v.service },
              {
                key: 'worker',
                title: 'Holding worker',
                flex: 1.8,
                render: (v) => (
                  <View testID={`volume-worker-${v.name}`}>
                    <View style={s.holder}>
                      <Text style={s.holderName}>{v.worker_name ?? shortId(v.worker_id)}</Text>
                      {v.worker_status ? <StatusBadge status={v.worker_status} /> : <StatusBadge status="removed" tone="danger" />}
                    </View>
                    {v.worker_status !== 'live' ? (
                      <Text style={s.holderLost} testID={`volume-holder-lost-${v.name}`}>
                        {`holder ${v.worker_status ? 'lost' : 'removed'} — restore from a backup`}
                      </Text>
                    ) : null}
                  </View>
                ),
              },
              { key: 'size', title: 'Size', flex: 0.8, render: (v) => <Text style={s.holderName} testID={`volume-size-${v.name}`}>{bytes(v.size_bytes)}</Text> },
              {
                key: 'backup',
                title: 'Last backup',
                flex: 0.9,
                render: (v) =>
                  v.last_backup_at ? (
                    <Text style={s.holderName} testID={`volume-last-backup-${v.name}`}>
                      {ago(v.last_backup_at)}
                    </Text>
                  ) : (
                    <Text style={s.never} testID={`volume-last-backup-${v.name}`}>
                      never
                    </Text>
                  ),
              },
              {
                key: 'copies',
                title: 'Old copies',
                flex: 0.8,
                render: (v) =>
                  v.other_copies.length === 0 ? (
                    '0'
                  ) : (
                    <View>
                      <Text style={s.holderName}>{String(v.other_copies.length)}</Text>
                      <Text style={s.sub} numberOfLines={1}>
                        {v.other_copies.map(workerName).join(', ')}
                      </Text>
                    </View>
                  ),
              },
              ...(isAdmin
                ? [
                    {
                      key: 'actions',
                      title: '',
                      flex: 2.1,
                      render: (v: Volume) => {
                        // A backup is made from the holder's copy, and a move needs the holder too.
                        const holderLive = v.worker_status === 'live';
                        const running = backupRunning(v);
                        return (
                          <View style={s.rowActions}>
                            <Button
                              label={running ? 'Backing up…' : 'Back up now'}
                              size="small"
                              disabled={!holderLive || running}
                              onPress={() => {
                                navigate({ name: 'volumes', volume: v.name });
                                void backupNow.run(v);
                              }}
                              testID={`volume-backup-${v.name}`}
                              accessibilityLabel={`Back up ${v.name} now`}
                            />
                            <Button
                              label={underWay.has(v.service) ? (underWay.get(v.service)?.backup_id ? 'Restoring…' : 'Moving…') : 'Move…'}
                              size="small"
                              disabled={underWay.has(v.service) || !holderLive}
                              onPress={() => setMoving(v)}
                              testID={`volume-move-${v.name}`}
                              accessibilityLabel={`Move ${v.service}`}
                            />
                          </View>
                        );
                      },
                    },
                  ]
                : []),
            ]}
          />
        ) : null}
      </Card>

      {selectedVolume ? (
        <BackupsPanel
          key={selectedVolume.name}
          volume={selectedVolume}
          workers={workers.data}
          workerName={workerName}
          followed={backupOf === selectedVolume.name ? backup.backup : undefined}
          followError={backupOf === selectedVolume.name ? backup.error : undefined}
          startError={backupOf === selectedVolume.name ? backupNow.error : undefined}
          restoreBlocked={underWay.has(selectedVolume.service)}
          onRestore={(b) => setRestoring({ backup: b, volume: selectedVolume })}
        />
      ) : selected && volumes.data ? (
        <Card title={`Backups of ${selected}`} testID="backups-card">
          <ErrorBanner error={new Error(`There is no volume named ${selected}.`)} />
        </Card>
      ) : null}

      <Card title="Recent moves" subtitle="Moves and restores, the newest first: under way, done or failed">
        <ErrorBanner error={moves.error} onRetry={() => void moves.reload()} />
        {!moves.data && !moves.error ? <Spinner label="Loading moves…" /> : null}
        {moves.data ? (
          <Table
            testID="moves-table"
            data={moves.data}
            keyOf={(m) => m.id}
            selectedKey={started?.move.id}
            empty="No service has been moved yet."
            columns={[
              { key: 'service', title: 'Service', flex: 1.2, render: (m) => m.service },
              {
                key: 'route',
                title: 'From → to',
                flex: 2,
                render: (m) => (
                  <View>
                    <Text style={s.route} numberOfLines={1}>
                      {workerName(m.source_worker_id)}
                      <Text style={s.arrow}> → </Text>
                      {workerName(m.target_worker_id)}
                    </Text>
                    {m.backup_id ? (
                      <Text style={s.sub} testID={`move-restore-${m.id}`}>
                        restore from backup {shortId(m.backup_id)}
                      </Text>
                    ) : null}
                  </View>
                ),
              },
              { key: 'state', title: 'State', flex: 1, render: (m) => <StatusBadge status={m.state} tone={moveTone(m.state)} /> },
              { key: 'bytes', title: 'Copied', flex: 0.9, render: (m) => bytes(m.bytes_copied) },
              {
                key: 'error',
                title: 'Error',
                flex: 2.2,
                render: (m) =>
                  m.error ? (
                    <Text style={s.moveError} numberOfLines={2}>
                      {m.error}
                    </Text>
                  ) : (
                    '—'
                  ),
              },
              {
                key: 'when',
                title: 'Started',
                flex: 1,
                render: (m) => (
                  <View>
                    <Text style={s.holderName}>{ago(m.created_at)}</Text>
                    <Text style={s.sub}>{dateTime(m.created_at)}</Text>
                  </View>
                ),
              },
            ]}
          />
        ) : null}
      </Card>

      {isAdmin && moving ? (
        <MoveDialog
          key={moving.name}
          volume={moving}
          workers={workers.data}
          workersError={workers.error}
          onCancel={() => setMoving(undefined)}
          onStarted={(move) => {
            setStarted({ move, volume: moving, steps: MOVE_STEPS });
            setMoving(undefined);
            void moves.reload();
          }}
        />
      ) : null}

      {isAdmin && restoring ? (
        <RestoreDialog
          key={restoring.backup.id}
          volume={restoring.volume}
          backup={restoring.backup}
          workers={workers.data}
          workersError={workers.error}
          workerName={workerName}
          onCancel={() => setRestoring(undefined)}
          onStarted={(move) => {
            setStarted({ move, volume: restoring.volume, steps: restoreSteps(move), backup: restoring.backup });
            setRestoring(undefined);
            void moves.reload();
          }}
        />
      ) : null}
    </Screen>
  );
}

/**
 * A volume's backups, the newest first, with the one an admin just began followed to its end;
 * admins restore the service from a done one. When the worker holding the volume is lost, says
 * that this is the way back.
 */
function BackupsPanel({
  volume,
  workers,
  workerName,
  followed,
  followError,
  startError,
  restoreBlocked,
  onRestore,
}: {
  volume: Volume;
  workers: Worker[] | undefined;
  workerName(id: string): string;
  /** The backup begun with Back up now, as last polled. */
  followed: Backup | undefined;
  followError: unknown;
  /** The refusal of Back up now (e.g. 409 backup_running). */
  startError: unknown;
  /** A move or restore of the service is under way. */
  restoreBlocked: boolean;
  onRestore(backup: Backup): void;
}) {
  const { isAdmin } = useSession();
  const backups = useBackups(volume.name);
  const followedEnded = followed && backupEnded(followed) ? followed.state : undefined;
  useEffect(() => {
    if (followedEnded) void backups.reload();
  }, [followedEnded, followed?.id]);

  // The followed backup as last polled (fresher than the list between its loads).
  const rows = backups.data
    ? followed && !backups.data.some((b) => b.id === followed.id)
      ? [followed, ...backups.data]
      : backups.data.map((b) => (followed && b.id === followed.id ? followed : b))
    : undefined;
  const holder = volume.worker_name ?? shortId(volume.worker_id);
  const storeName = (b: Backup) => workerName(b.store_worker_id);
  const storeStatus = (b: Backup) => workers?.find((w) => w.id === b.store_worker_id)?.status;

  return (
    <Card
      title={`Backups of ${volume.name}`}
      subtitle="The newest first. Each is incremental: only new contents are sent to the worker keeping it."
      testID="backups-card"
    >
      {volume.worker_status !== 'live' ? (
        <WarnBanner title={`The worker holding ${volume.name}, ${holder}, is ${volume.worker_status ? 'lost' : 'removed'}`} testID="volume-holder-lost">
          {`${volume.service} waits for it to come back. If it is gone for good, ${isAdmin ? 'restore' : 'an admin can restore'} ${volume.service} from one of these backups onto a live worker${isAdmin ? ' (Restore…)' : ''}.`}
        </WarnBanner>
      ) : null}
      <ErrorBanner error={startError} testID="backup-error" />
      {followed?.state === 'running' ? <InfoBanner testID="backup-running">{`Backing up ${volume.name} from ${workerName(followed.source_worker_id)}…`}</InfoBanner> : null}
      {followed?.state === 'done' ? (
        <SuccessBanner testID="backup-done">
          {`Backed up ${volume.name}: ${followed.files} files, ${bytes(followed.bytes)}, of which ${bytes(followed.bytes_sent)} were sent; kept on ${storeName(followed)}.` +
            (followed.store_worker_id === followed.source_worker_id
              ? ' With no other live worker it is kept on the worker holding the volume: join another worker so that a backup outlives this one.'
              : '')}
        </SuccessBanner>
      ) : null}
      {followed?.state === 'failed' ? (
        <ErrorBanner testID="backup-failed" error={new Error(`The backup of ${volume.name} failed: ${followed.error ?? 'no reason was given'}.`)} />
      ) : null}
      <ErrorBanner error={followError} />
      <ErrorBanner error={backups.error} onRetry={() => void backups.reload()} />
      {!rows && !backups.error ? <Spinner label="Loading backups…" /> : null}
      {rows ? (
        <Table
          testID="backups-table"
          data={rows}
          keyOf={(b) => b.id}
          selectedKey={followed?.id}
          empty={`No backup of ${volume.name} yet.`}
          columns={[
            {
              key: 'when',
              title: 'Taken',
              flex: 1.2,
              render: (b) => (
                <View>
                  <Text style={s.holderName}>{ago(b.created_at)}</Text>
                  <Text style={s.sub}>{dateTime(b.created_at)}</Text>
                </View>
              ),
            },
            { key: 'state', title: 'State', flex: 0.9, render: (b) => <StatusBadge status={b.state} tone={backupTone(b.state)} testID={`backup-state-${b.id}`} /> },
            {
              key: 'files',
              title: 'Files',
              flex: 0.6,
              render: (b) => (
                <Text style={s.holderName} testID={`backup-files-${b.id}`}>
                  {String(b.files)}
                </Text>
              ),
            },
            { key: 'size', title: 'Size', flex: 0.8, render: (b) => bytes(b.bytes) },
            {
              key: 'sent',
              title: 'Sent',
              flex: 1,
              render: (b) => (
                <View>
                  <Text style={s.holderName}>{bytes(b.bytes_sent)}</Text>
                  {b.state === 'done' && b.bytes > 0 ? <Text style={s.sub}>{`${Math.min(100, Math.round((b.bytes_sent / b.bytes) * 100))}% of its size`}</Text> : null}
                </View>
              ),
            },
            {
              key: 'store',
              title: 'Kept on',
              flex: 1.3,
              render: (b) => (
                <View testID={`backup-store-${b.id}`}>
                  <View style={s.holder}>
                    <Text style={s.holderName}>{storeName(b)}</Text>
                    {workers && storeStatus(b) !== 'live' ? <StatusBadge status={storeStatus(b) ?? 'removed'} tone="danger" /> : null}
                  </View>
                  {b.store_worker_id === b.source_worker_id ? <Text style={s.sub}>where it was taken</Text> : null}
                </View>
              ),
            },
            {
              key: 'error',
              title: 'Error',
              flex: 1.8,
              render: (b) =>
                b.error ? (
                  <Text style={s.moveError} numberOfLines={2} testID={`backup-error-${b.id}`}>
                    {b.error}
                  </Text>
                ) : (
                  '—'
                ),
            },
            ...(isAdmin
              ? [
                  {
                    key: 'actions',
                    title: '',
                    flex: 0.9,
                    render: (b: Backup) =>
                      b.state === 'done' ? (
                        <View style={s.rowActions}>
                          <Button
                            label="Restore…"
                            size="small"
                            disabled={restoreBlocked}
                            onPress={() => onRestore(b)}
                            testID={`backup-restore-${b.id}`}
                            accessibilityLabel={`Restore ${volume.service} from the backup of ${dateTime(b.created_at)}`}
                          />
                        </View>
                      ) : null,
                  },
                ]
              : []),
          ]}
        />
      ) : null}
    </Card>
  );
}

/** The live workers to pick one from (a move's or a restore's destination), as radio buttons. */
function WorkerPicker({
  workers,
  picked,
  onPick,
  label,
  idPrefix,
  sizeBytes,
}: {
  workers: Worker[];
  picked: string | undefined;
  onPick(id: string): void;
  label: string;
  /** `move-target`: the group is `move-targets`, each worker `move-target-<name>`. */
  idPrefix: string;
  /** The data to fit: a worker with less disk free says so. */
  sizeBytes: number | undefined;
}) {
  return (
    <View style={s.options} role="radiogroup" aria-label={label} testID={`${idPrefix}s`}>
      {workers.map((w) => {
        const on = w.id === picked;
        const room = sizeBytes !== undefined && w.resources.disk_free_bytes < sizeBytes ? ' · not enough room' : '';
        return (
          <Pressable
            key={w.id}
            role="radio"
            aria-checked={on}
            aria-label={w.name}
            testID={`${idPrefix}-${w.name}`}
            onPress={() => onPick(w.id)}
            style={({ hovered }) => [s.option, hovered && s.optionHover, on && s.optionPicked]}
          >
            <View>
              <Text style={s.optionName}>{w.name}</Text>
              <Text style={s.optionDetail}>
                {w.hostname} · {bytes(w.resources.disk_free_bytes)} disk free{room}
              </Text>
            </View>
            <StatusBadge status={w.status} />
          </Pressable>
        );
      })}
    </View>
  );
}

/** Asks which live worker to move the service to (any but the one holding its data). */
function MoveDialog({
  volume,
  workers,
  workersError,
  onCancel,
  onStarted,
}: {
  volume: Volume;
  workers: Worker[] | undefined;
  workersError: unknown;
  onCancel(): void;
  onStarted(move: VolumeMove): void;
}) {
  const actions = useVolumeActions();
  const [target, setTarget] = useState<string | undefined>(undefined);
  const candidates = (workers ?? []).filter((w) => w.status === 'live' && w.id !== volume.worker_id);
  const act = useAction(async () => {
    if (!target) throw new Error('Pick the worker to move it to.');
    onStarted(await actions.move(volume.service, target));
  });

  return (
    <ConfirmDialog
      visible
      testID="move-dialog"
      title={`Move ${volume.service}`}
      message="The service stops, its data is copied straight to the chosen worker, it starts there, and the old copy is deleted once it is healthy."
      confirmLabel="Move"
      busy={act.running}
      confirmDisabled={!target}
      onCancel={onCancel}
      onConfirm={() => void act.run()}
    >
      <Text style={s.pickLabel}>Move to</Text>
      <ErrorBanner error={workersError} />
      {!workers && !workersError ? <Spinner label="Loading workers…" /> : null}
      {workers && candidates.length === 0 ? (
        <InfoBanner testID="move-no-target">
          {`There is no other live worker to move to: ${volume.service} is on ${volume.worker_name ?? shortId(volume.worker_id)}, the only one. Join another worker (Settings shows how), then move it.`}
        </InfoBanner>
      ) : null}
      {candidates.length > 0 ? (
        <WorkerPicker workers={candidates} picked={target} onPick={setTarget} label="Worker to move to" idPrefix="move-target" sizeBytes={volume.size_bytes} />
      ) : null}
      <ErrorBanner error={act.error} testID="move-error" />
    </ConfirmDialog>
  );
}

/**
 * Asks which live worker to restore the service onto from a backup: any but the one holding its
 * current copy while that worker is live (the conductor refuses that: 409 restore_over_current_copy).
 */
function RestoreDialog({
  volume,
  backup,
  workers,
  workersError,
  workerName,
  onCancel,
  onStarted,
}: {
  volume: Volume;
  backup: Backup;
  workers: Worker[] | undefined;
  workersError: unknown;
  workerName(id: string): string;
  onCancel(): void;
  onStarted(move: VolumeMove): void;
}) {
  const actions = useVolumeActions();
  const [target, setTarget] = useState<string | undefined>(undefined);
  const holderLive = volume.worker_status === 'live';
  const holder = volume.worker_name ?? shortId(volume.worker_id);
  const candidates = (workers ?? []).filter((w) => w.status === 'live' && !(holderLive && w.id === volume.worker_id));
  // The backup is read from the worker keeping it, which must be live.
  const storeLive = !workers || workers.some((w) => w.id === backup.store_worker_id && w.status === 'live');
  const act = useAction(async () => {
    if (!target) throw new Error('Pick the worker to restore it onto.');
    onStarted(await actions.restore(volume.service, backup.id, target));
  });

  return (
    <ConfirmDialog
      visible
      testID="restore-dialog"
      title={`Restore ${volume.service}`}
      message={`${volume.service} is started on the chosen worker with the data of this backup; its current copy, if its worker is still there, is kept unused.`}
      confirmLabel="Restore"
      busy={act.running}
      confirmDisabled={!target || !storeLive}
      onCancel={onCancel}
      onConfirm={() => void act.run()}
    >
      <View style={s.facts} testID="restore-backup">
        <Text style={s.factsTitle}>{`Backup ${shortId(backup.id)}, taken ${dateTime(backup.created_at)}`}</Text>
        <Text style={s.optionDetail}>{`${backup.files} files · ${bytes(backup.bytes)} · kept on ${workerName(backup.store_worker_id)}`}</Text>
      </View>
      {!storeLive ? (
        <WarnBanner title="The worker keeping this backup is not live" testID="restore-store-lost">
          {`${workerName(backup.store_worker_id)} keeps this backup; it can be restored once that worker is back. An older backup kept elsewhere may serve now.`}
        </WarnBanner>
      ) : null}
      <Text style={s.pickLabel}>Restore onto</Text>
      <ErrorBanner error={workersError} />
      {!workers && !workersError ? <Spinner label="Loading workers…" /> : null}
      {workers && candidates.length === 0 ? (
        <InfoBanner testID="restore-no-target">
          {holderLive
            ? `There is no other live worker to restore onto: ${volume.service}’s current copy is on ${holder}, the only live one. Join another worker (Settings shows how), then restore.`
            : 'There is no live worker to restore onto. Join a worker (Settings shows how), then restore.'}
        </InfoBanner>
      ) : null}
      {candidates.length > 0 ? (
        <WorkerPicker workers={candidates} picked={target} onPick={setTarget} label="Worker to restore onto" idPrefix="restore-target" sizeBytes={backup.bytes} />
      ) : null}
      <ErrorBanner error={act.error} testID="restore-error" />
    </ConfirmDialog>
  );
}

/**
 * A move or a restore under way, polled every second: its step and bytes copied; how it ended. A
 * restore (`move.backup_id`) copies from where its backup is kept and leaves the old copy alone.
 */
function MoveProgress({
  move,
  error,
  volume,
  steps,
  backup,
  workerName,
  onDismiss,
}: {
  move: VolumeMove;
  error: unknown;
  volume: Volume;
  steps: MoveState[];
  backup: Backup | undefined;
  workerName(id: string): string;
  onDismiss(): void;
}) {
  const restore = move.backup_id !== undefined;
  const from = workerName(move.source_worker_id);
  const to = workerName(move.target_worker_id);
  const ended = moveEnded(move);
  const current = steps.indexOf(move.state);
  const total = restore ? backup?.bytes : volume.size_bytes;
  const verb = restore ? 'Restor' : 'Mov';
  const title =
    move.state === 'done'
      ? `${restore ? 'Restored' : 'Moved'} ${move.service}`
      : move.state === 'failed'
        ? `${verb}ing ${move.service} failed`
        : `${verb}ing ${move.service}`;
  const backupName = `backup ${shortId(move.backup_id)}`;
  return (
    <Card
      title={title}
      subtitle={restore ? `${backupName}${backup ? ` (kept on ${workerName(backup.store_worker_id)})` : ''} → ${to}` : `${from} → ${to}`}
      testID="move-progress"
      actions={<StatusBadge status={move.state} tone={moveTone(move.state)} testID="move-state" />}
    >
      <View style={s.steps}>
        {steps.map((step, i) => {
          const past = move.state === 'done' || (current >= 0 && i < current);
          const now = i === current;
          return (
            <View key={step} style={s.holder}>
              {i > 0 ? <Text style={s.stepSep}>›</Text> : null}
              <View style={[s.step, past && s.stepPast, now && s.stepCurrent]}>
                <Text style={[s.stepText, past && s.stepPastText, now && s.stepCurrentText]}>{STEP_LABEL[step]}</Text>
              </View>
            </View>
          );
        })}
      </View>
      {!ended ? (
        <Text style={s.now} testID="move-step">
          {(restore ? RESTORE_STEP_TEXT : STEP_TEXT)[move.state]}
        </Text>
      ) : null}
      {total && total > 0 ? (
        <Meter
          label="Copied"
          kind="progress"
          used={move.bytes_copied}
          total={total}
          detail={`${bytes(move.bytes_copied)} of about ${bytes(total)}`}
          testID="move-bytes"
        />
      ) : (
        <Text style={s.now} testID="move-bytes">
          Copied: {bytes(move.bytes_copied)}
        </Text>
      )}
      <ErrorBanner error={error} />
      {move.state === 'done' ? (
        <SuccessBanner testID="move-done">
          {restore
            ? `${move.service} now runs on ${to} with the data of ${backupName}${backup ? `, taken ${dateTime(backup.created_at)}` : ''}; its old copy on ${from}, if that worker is still there, is kept unused.`
            : `${move.service} now runs on ${to} with its data; the old copy on ${from} is deleted.`}
        </SuccessBanner>
      ) : null}
      {move.state === 'failed' ? (
        <ErrorBanner
          testID="move-failed"
          error={
            new Error(
              restore
                ? `The restore failed: ${move.error ?? 'no reason was given'}. ${move.service} stays with its data on its old worker, ${from}; try again, or from another backup.`
                : `The move failed: ${move.error ?? 'no reason was given'}. ${move.service} stays on its old worker, ${from}, with its data there.`,
            )
          }
        />
      ) : null}
      {ended ? (
        <View style={s.progressButtons}>
          <Button label="Dismiss" size="small" variant="ghost" onPress={onDismiss} testID="move-dismiss" />
        </View>
      ) : null}
    </Card>
  );
}
