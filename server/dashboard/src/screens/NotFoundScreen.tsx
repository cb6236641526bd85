import { Text } from 'react-native';

import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { Screen } from '../components/Screen';
import { textStyles } from '../components/styles';
import { useRouter } from '../router';

export function NotFoundScreen({ path }: { path: string }) {
  const { navigate } = useRouter();
  return (
    <Screen title="Not found">
      <Card>
        <Text style={textStyles.body}>Nothing lives at {path}.</Text>
        <Button label="Back to the overview" onPress={() => navigate({ name: 'overview' })} />
      </Card>
    </Screen>
  );
}
