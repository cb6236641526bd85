import { Text, View } from 'react-native';

import { errorMessage } from '../format';
import { Button } from './Button';
import { bannerStyles as s } from './styles';

/** An error (any thrown value; AerekosApiError shows its message and request id), with a retry. */
export function ErrorBanner({ error, onRetry, testID }: { error: unknown; onRetry?: () => void; testID?: string }) {
  if (error === undefined || error === null) return null;
  return (
    <View style={[s.banner, s.error]} role="alert" testID={testID ?? 'error-banner'}>
      <Text style={[s.text, s.errorText]}>{errorMessage(error)}</Text>
      {onRetry ? (
        <View style={s.retry}>
          <Button label="Retry" size="small" variant="danger" onPress={onRetry} />
        </View>
      ) : null}
    </View>
  );
}

export function InfoBanner({ children, testID }: { children: string; testID?: string }) {
  return (
    <View style={[s.banner, s.info]} role="status" testID={testID}>
      <Text style={[s.text, s.infoText]}>{children}</Text>
    </View>
  );
}
