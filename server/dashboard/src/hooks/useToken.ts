// The worker registration token (admins only) and the signed-in user.

import { unwrap } from '@aerekos/sdk';

import { useClients, useSession } from './useSession';
import { useAsync } from './useAsync';

export function useRegistrationToken() {
  const { conductor } = useClients();
  const { isAdmin } = useSession();
  const state = useAsync(async () => (isAdmin ? unwrap(conductor.GET('/api/token')) : undefined), [conductor, isAdmin]);
  return {
    ...state,
    regenerate: async () => {
      await unwrap(conductor.POST('/api/token/regenerate'));
      await state.reload();
    },
  };
}

export function useMe() {
  const { conductor } = useClients();
  return useAsync(() => unwrap(conductor.GET('/api/auth/me')), [conductor]);
}
