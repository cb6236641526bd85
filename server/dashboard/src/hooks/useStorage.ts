// storage_manager, through the conductor's gateway: buckets, a "folder" level of a bucket's
// objects, and uploads with progress, downloads, deletes.

import { AerekosApiError, getObject, putObject, unwrap, type ObjectInfo, type ObjectList, type StorageManagerClient } from '@aerekos/sdk';
import { useCallback, useState } from 'react';

import { useClients, useSession } from './useSession';
import { useAsync } from './useAsync';

export const DELIMITER = '/';
const PAGE_SIZE = 200;

export function useBuckets(intervalMs = 10000) {
  const { storage } = useClients();
  return useAsync(() => unwrap(storage.GET('/api/storage_manager/buckets')), [storage], intervalMs);
}

function listObjects(storage: StorageManagerClient, bucket: string, prefix: string, continuationToken?: string): Promise<ObjectList> {
  return unwrap(
    storage.GET('/api/storage_manager/buckets/{bucket}/objects', {
      params: {
        path: { bucket },
        query: { prefix, delimiter: DELIMITER, page_size: PAGE_SIZE, ...(continuationToken ? { continuation_token: continuationToken } : {}) },
      },
    }),
  );
}

/** One folder level of `bucket` under `prefix`: its folders and objects, page by page. */
export function useObjects(bucket: string, prefix: string) {
  const { storage } = useClients();
  const [more, setMore] = useState<ObjectList[]>([]);
  const first = useAsync(
    async () => {
      setMore([]);
      return listObjects(storage, bucket, prefix);
    },
    [storage, bucket, prefix],
  );
  const pages = first.data ? [first.data, ...more] : [];
  const last = pages.at(-1);
  const loadMore = useCallback(async () => {
    if (!last?.next_continuation_token) return;
    const page = await listObjects(storage, bucket, prefix, last.next_continuation_token);
    setMore((m) => [...m, page]);
  }, [storage, bucket, prefix, last?.next_continuation_token]);
  return {
    ...first,
    folders: pages.flatMap((p) => p.common_prefixes),
    objects: pages.flatMap((p) => p.objects),
    hasMore: Boolean(last?.next_continuation_token),
    loadMore,
  };
}

export interface UploadProgress {
  name: string;
  sent: number;
  total: number;
}

export function useStorageActions() {
  const { storage } = useClients();
  const { signOut } = useSession();
  // Uploads go through XMLHttpRequest (for progress), outside the clients' 401 check.
  const guard = <T>(p: Promise<T>): Promise<T> =>
    p.catch((e: unknown) => {
      if (e instanceof AerekosApiError && e.status === 401) signOut('Your session has expired. Sign in again.');
      throw e;
    });
  return {
    createBucket: (name: string) => unwrap(storage.POST('/api/storage_manager/buckets', { body: { name } })),
    deleteBucket: (bucket: string) => unwrap(storage.DELETE('/api/storage_manager/buckets/{bucket}', { params: { path: { bucket } } })),
    upload: (bucket: string, key: string, file: Blob, onProgress: (sent: number, total: number) => void): Promise<ObjectInfo> =>
      guard(putObject(storage, bucket, key, file, { contentType: file.type || 'application/octet-stream', onProgress })),
    download: async (bucket: string, key: string) => {
      const blob = await getObject(storage, bucket, key);
      saveBlob(blob, key.split('/').pop() || key);
    },
    deleteObject: (bucket: string, key: string) =>
      unwrap(storage.DELETE('/api/storage_manager/buckets/{bucket}/objects/{key}', { params: { path: { bucket, key } } })),
  };
}

/** Hands a downloaded object to the browser as a file. */
function saveBlob(blob: Blob, name: string) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
