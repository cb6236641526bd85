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

/** Something people should act on or know is blocking (a service waiting for its data's worker). */
export function WarnBanner({ title, children, testID }: { title?: string; children: string; testID?: string }) {
  return (
    <View style={[s.banner, s.warn]} role="status" testID={testID}>
      <View style={s.body}>
        {title ? <Text style={[s.text, s.warnTitle]}>{title}</Text> : null}
        <Text style={[s.text, s.warnText]}>{children}</Text>
      </View>
    </View>
  );
}

/** Something that went as asked (a move that finished). */
export function SuccessBanner({ children, testID }: { children: string; testID?: string }) {
  return (
    <View style={[s.banner, s.ok]} role="status" testID={testID}>
      <Text style={[s.text, s.okText]}>{children}</Text>
    </View>
  );
}
