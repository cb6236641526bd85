// Aliases for the key_manager schemas, exported from index.ts as the `KeyManagerTypes` namespace
// (`KeyManagerTypes.Key`, `KeyManagerTypes.EncryptResponse`, ...) so that names like `Key` or
// `Health` cannot clash with the conductor's flat aliases.

import type { components } from './generated/key_manager.js';

type Schemas = components['schemas'];

export type AuditPage = Schemas['AuditPage'];
export type AuditRecord = Schemas['AuditRecord'];
export type BatchDecryptRequest = Schemas['BatchDecryptRequest'];
export type BatchDecryptResponse = Schemas['BatchDecryptResponse'];
export type BatchDecryptResult = Schemas['BatchDecryptResult'];
export type BatchEncryptRequest = Schemas['BatchEncryptRequest'];
export type BatchEncryptResponse = Schemas['BatchEncryptResponse'];
export type BatchEncryptResult = Schemas['BatchEncryptResult'];
export type CreateKeyRequest = Schemas['CreateKeyRequest'];
export type DataKeyRequest = Schemas['DataKeyRequest'];
export type DataKeyResponse = Schemas['DataKeyResponse'];
export type DecryptRequest = Schemas['DecryptRequest'];
export type DecryptResponse = Schemas['DecryptResponse'];
export type EncryptRequest = Schemas['EncryptRequest'];
export type EncryptResponse = Schemas['EncryptResponse'];
export type ErrorBody = Schemas['ErrorBody'];
export type Health = Schemas['Health'];
export type Key = Schemas['Key'];
export type KeyState = Schemas['KeyState'];
export type KeyUsage = Schemas['KeyUsage'];
export type KeyVersion = Schemas['KeyVersion'];
export type RandomRequest = Schemas['RandomRequest'];
export type RandomResponse = Schemas['RandomResponse'];
export type ScheduleDeletionRequest = Schemas['ScheduleDeletionRequest'];
export type UpdateKeyRequest = Schemas['UpdateKeyRequest'];

/** The encryption context: string pairs bound to a ciphertext; decrypting needs the same pairs. */
export type EncryptionContext = NonNullable<EncryptRequest['context']>;
