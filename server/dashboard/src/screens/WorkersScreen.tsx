import { Text, View } from 'react-native';

import { Card } from '../components/Card';
import { ErrorBanner } from '../components/ErrorBanner';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { ago, bytes, pct } from '../format';
import { useWorkers } from '../hooks/useWorkers';
import { useRouter } from '../router';
import { workersStyles as s } from './workers.styles';

export function WorkersScreen() {
  const workers = useWorkers();
  const { navigate } = useRouter();
  return (
    <Screen kicker="The machines" title="Workers" subtitle="Every machine that joined this conductor. Live ones heartbeat; lost ones have been silent for longer than the worker TTL." testID="workers-screen">
      <Card title="Registered workers" subtitle={workers.data ? `${workers.data.length} in all` : undefined}>
        <ErrorBanner error={workers.error} onRetry={() => void workers.reload()} />
        {!workers.data && !workers.error ? <Spinner label="Loading workers…" /> : null}
        {workers.data ? (
          <Table
            testID="workers-table"
            data={workers.data}
            keyOf={(w) => w.id}
            onPress={(w) => navigate({ name: 'worker', id: w.id })}
            empty="No worker has joined yet. Settings shows the command that joins one."
            columns={[
              {
                key: 'name',
                title: 'Worker',
                flex: 1.6,
                render: (w) => (
                  <View>
                    <Text style={s.name}>{w.name}</Text>
                    <Text style={s.sub}>{w.hostname} · {w.ip_address}</Text>
                  </View>
                ),
              },
              { key: 'status', title: 'Status', flex: 0.8, render: (w) => <StatusBadge status={w.status} /> },
              { key: 'cpu', title: 'CPU', flex: 0.9, render: (w) => `${w.resources.cpu_cores} × ${pct(w.resources.cpu_usage_percent)}` },
              { key: 'memory', title: 'Memory free', flex: 1.5, render: (w) => `${bytes(w.resources.memory_available_bytes)} / ${bytes(w.resources.memory_total_bytes)}` },
              { key: 'disk', title: 'Disk free', flex: 1.5, render: (w) => `${bytes(w.resources.disk_free_bytes)} / ${bytes(w.resources.disk_total_bytes)}` },
              { key: 'drivers', title: 'Drivers', flex: 0.9, render: (w) => (w.resources.drivers ?? []).map((d) => d.name).join(', ') || '—' },
              { key: 'heartbeat', title: 'Last heartbeat', render: (w) => ago(w.last_heartbeat_at) },
            ]}
          />
        ) : null}
      </Card>
    </Screen>
  );
}
