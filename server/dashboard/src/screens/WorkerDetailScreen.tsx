import { Text, View } from 'react-native';

import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { ErrorBanner } from '../components/ErrorBanner';
import { Meter } from '../components/Meter';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { ago, bytes, dateTime, pct, shortId } from '../format';
import { useWorker, useWorkerInstances } from '../hooks/useWorkers';
import { useRouter } from '../router';
import { workersStyles as s } from './workers.styles';

function Fact({ label, value, testID }: { label: string; value: string; testID?: string }) {
  return (
    <View style={s.fact}>
      <Text style={s.factLabel}>{label}</Text>
      <Text style={s.factValue} testID={testID}>
        {value}
      </Text>
    </View>
  );
}

export function WorkerDetailScreen({ id }: { id: string }) {
  const worker = useWorker(id);
  const instances = useWorkerInstances(id);
  const { navigate } = useRouter();
  const w = worker.data;
  const r = w?.resources;

  return (
    <Screen kicker="Worker" title={w?.name ?? 'Worker'} subtitle={w ? `${w.hostname} · ${w.ip_address}` : undefined} actions={w ? <StatusBadge status={w.status} testID="worker-status" /> : null} testID="worker-detail-screen">
      <View style={s.top}>
        <Button label="← All workers" size="small" variant="ghost" onPress={() => navigate({ name: 'workers' })} />
        <Button label="Logs" size="small" variant="ghost" onPress={() => navigate({ name: 'logs', worker: id })} testID="worker-logs" accessibilityLabel="This worker's lines in Logs" />
      </View>
      <ErrorBanner error={worker.error} onRetry={() => void worker.reload()} />
      {!w && !worker.error ? <Spinner label="Loading the worker…" /> : null}
      {w && r ? (
        <>
          <View style={s.columns}>
            <Card title="Resources" style={s.column}>
              <Meter label={`CPU · ${r.cpu_cores} cores`} used={r.cpu_usage_percent} total={100} detail={`${pct(r.cpu_usage_percent)} in use`} />
              <Meter
                label="Memory"
                used={r.memory_total_bytes - r.memory_available_bytes}
                total={r.memory_total_bytes}
                detail={`${bytes(r.memory_available_bytes)} free of ${bytes(r.memory_total_bytes)}`}
              />
              <Meter label="Disk" used={r.disk_total_bytes - r.disk_free_bytes} total={r.disk_total_bytes} detail={`${bytes(r.disk_free_bytes)} free of ${bytes(r.disk_total_bytes)}`} />
            </Card>
            <Card title="Identity" style={s.column}>
              <View style={s.facts}>
                <Fact label="Id" value={w.id} />
                <Fact label="Last heartbeat" value={`${ago(w.last_heartbeat_at)} (${dateTime(w.last_heartbeat_at)})`} testID="worker-heartbeat" />
                <Fact label="Registered" value={dateTime(w.registered_at)} />
                <Fact label="Operating system" value={r.os ?? '—'} />
                <Fact label="Worker API" value={w.api_url ?? 'none'} />
              </View>
            </Card>
          </View>
          <View style={s.columns}>
            <Card title="Drivers" style={s.column}>
              <View style={s.chips} testID="worker-drivers">
                {(r.drivers ?? []).length === 0 ? <Text style={s.none}>No runtime driver reported.</Text> : null}
                {(r.drivers ?? []).map((d) => (
                  <View key={d.name} style={s.chip}>
                    <Text style={s.chipKey}>{d.name}</Text>
                    <Text style={s.chipValue}>{d.version ?? 'available'}</Text>
                  </View>
                ))}
              </View>
              {(r.unavailable_drivers ?? []).length > 0 ? (
                <View testID="worker-drivers-unavailable">
                  {(r.unavailable_drivers ?? []).map((d) => (
                    <Text key={d.name} style={s.none}>
                      {`${d.name}: not offered (${d.reason})`}
                    </Text>
                  ))}
                </View>
              ) : null}
            </Card>
            <Card title="Labels" style={s.column}>
              <View style={s.chips} testID="worker-labels">
                {Object.keys(w.labels).length === 0 ? <Text style={s.none}>No labels.</Text> : null}
                {Object.entries(w.labels).map(([k, v]) => (
                  <View key={k} style={s.chip}>
                    <Text style={s.chipKey}>{k}</Text>
                    <Text style={s.chipValue}>{v}</Text>
                  </View>
                ))}
              </View>
            </Card>
          </View>
        </>
      ) : null}
      <Card title="Instances on this worker">
        <ErrorBanner error={instances.error} onRetry={() => void instances.reload()} />
        {!instances.data && !instances.error ? <Spinner label="Loading instances…" /> : null}
        {instances.data ? (
          <Table
            testID="worker-instances"
            data={instances.data}
            keyOf={(i) => i.id}
            onPress={(i) => (i.service ? navigate({ name: 'service', service: i.service }) : undefined)}
            empty="Nothing runs here."
            columns={[
              { key: 'service', title: 'Service', flex: 2, render: (i) => i.service ?? (i.spec.image ?? i.spec.command?.join(' ') ?? '—') },
              { key: 'id', title: 'Instance', render: (i) => shortId(i.id) },
              { key: 'state', title: 'State', render: (i) => <StatusBadge status={i.state} /> },
              { key: 'health', title: 'Health', render: (i) => <StatusBadge status={i.health} /> },
              { key: 'restarts', title: 'Restarts', render: (i) => String(i.restarts) },
              { key: 'address', title: 'Address', render: (i) => i.address ?? '—' },
              {
                key: 'logs',
                title: '',
                flex: 0.6,
                render: (i) => (
                  <Button
                    label="Logs"
                    size="small"
                    variant="ghost"
                    onPress={() => navigate({ name: 'logs', instance: i.id })}
                    testID={`worker-instance-logs-${i.id}`}
                    accessibilityLabel={`Logs of instance ${shortId(i.id)}`}
                  />
                ),
              },
            ]}
          />
        ) : null}
      </Card>
      {r && (r.network ?? []).length > 0 ? (
        <Card title="Network">
          <Table
            data={r.network ?? []}
            keyOf={(n) => n.name}
            columns={[
              { key: 'name', title: 'Interface', render: (n) => n.name },
              { key: 'addresses', title: 'Addresses', flex: 2, render: (n) => (n.addresses ?? []).join(', ') || '—' },
              { key: 'rx', title: 'Received', render: (n) => bytes(n.rx_bytes ?? 0) },
              { key: 'tx', title: 'Sent', render: (n) => bytes(n.tx_bytes ?? 0) },
            ]}
          />
        </Card>
      ) : null}
    </Screen>
  );
}
