// Volumes (each stateful service's data, on the worker holding it); moves of a service with its
// data to another worker (the list of moves, one move followed step by step, starting one); a
// volume's backups (the list, backing up now and following it) and restoring a service from one.

import { unwrap, type ConductorComponents } from '@aerekos/sdk';

import { useClients } from './useSession';
import { useAsync, useFollow } from './useAsync';

export type Volume = ConductorComponents['schemas']['Volume'];
export type VolumeMove = ConductorComponents['schemas']['VolumeMove'];
export type MoveState = ConductorComponents['schemas']['MoveState'];
export type Backup = ConductorComponents['schemas']['Backup'];
export type BackupState = ConductorComponents['schemas']['BackupState'];

/** The steps of a move that runs, in order (then `done`, or `failed` at any step). */
export const MOVE_STEPS: MoveState[] = ['stopping', 'copying', 'starting', 'cleaning'];

/**
 * The steps of a restore: the old copy is left alone (no clean-up), and there is nothing to stop
 * when the worker holding it is lost (the restore then begins at `copying`).
 */
export function restoreSteps(begun: VolumeMove): MoveState[] {
  return begun.state === 'stopping' ? ['stopping', 'copying', 'starting'] : ['copying', 'starting'];
}

export function moveEnded(m: VolumeMove): boolean {
  return m.state === 'done' || m.state === 'failed';
}

export function backupEnded(b: Backup): boolean {
  return b.state === 'done' || b.state === 'failed';
}

export function useVolumes(intervalMs = 5000) {
  const { conductor } = useClients();
  return useAsync<Volume[]>(() => unwrap(conductor.GET('/api/volumes')), [conductor], intervalMs);
}

/** The newest moves (at most 100), under way or ended. */
export function useMoves(intervalMs = 3000) {
  const { conductor } = useClients();
  return useAsync<VolumeMove[]>(() => unwrap(conductor.GET('/api/moves')), [conductor], intervalMs);
}

export function useVolumeActions() {
  const { conductor } = useClients();
  return {
    /** Starts moving `service` (with its volume) to `workerId`; the answer is the move, just begun. */
    move: (service: string, workerId: string) =>
      unwrap(conductor.POST('/api/services/{name}/move', { params: { path: { name: service } }, body: { worker_id: workerId } })),
    /** Backs up volume `volume` now; the answer is the backup, just begun (`running`). */
    backup: (volume: string) => unwrap(conductor.POST('/api/volumes/{name}/backups', { params: { path: { name: volume } } })),
    /**
     * Restores `service` from backup `backupId` onto `workerId`; the answer is a move (with its
     * `backup_id`), followed like any other.
     */
    restore: (service: string, backupId: string, workerId: string) =>
      unwrap(
        conductor.POST('/api/services/{name}/restore', {
          params: { path: { name: service } },
          body: { backup_id: backupId, worker_id: workerId },
        }),
      ),
  };
}

/**
 * Follows a move (or a restore, which is a move whose data comes from a backup): asks for it every
 * `intervalMs` until it is done or failed. `started` is the move as the call answered it.
 */
export function useMoveProgress(started: VolumeMove | undefined, intervalMs = 1000) {
  const { conductor } = useClients();
  const { value, error } = useFollow(
    started,
    (id) => unwrap(conductor.GET('/api/moves/{id}', { params: { path: { id } } })),
    moveEnded,
    [conductor],
    intervalMs,
  );
  return { move: value, error };
}

/** A volume's backups (at most 200), the newest first. */
export function useBackups(volume: string, intervalMs = 5000) {
  const { conductor } = useClients();
  return useAsync<Backup[]>(() => unwrap(conductor.GET('/api/backups', { params: { query: { volume } } })), [conductor, volume], intervalMs);
}

/** Follows a backup just begun: asks for it every `intervalMs` until it is done or failed. */
export function useBackupProgress(started: Backup | undefined, intervalMs = 1000) {
  const { conductor } = useClients();
  const { value, error } = useFollow(
    started,
    (id) => unwrap(conductor.GET('/api/backups/{id}', { params: { path: { id } } })),
    backupEnded,
    [conductor],
    intervalMs,
  );
  return { backup: value, error };
}
