// The service catalog, each service's deployment and instances, and what admins do with them:
// enable, disable, deploy with a number of replicas; the recent output of an instance, and links
// to the Logs screen for the service's or an instance's kept lines; its requests, 5xx answers and
// latency over the last hour, day or week (metrics_manager's history of its instances' /metrics).

import type { Instance, Worker } from '@aerekos/sdk';
import { useState } from 'react';
import { Text, View } from 'react-native';

import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { HistoryChart } from '../components/Chart';
import { CodeBlock } from '../components/Code';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { ErrorBanner, InfoBanner, WarnBanner } from '../components/ErrorBanner';
import { Field } from '../components/Field';
import { HistoryBanner, RangePicker } from '../components/History';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { ago, latency, perSecond, shortId } from '../format';
import { useAction } from '../hooks/useAsync';
import { METRICS_RANGES, counter, historyMessage, pointsOf, rangeOf, useMetricHistory, type MetricsRange } from '../hooks/useMetrics';
import { serviceHealth, useDeployment, useInstanceLogs, useServiceActions, useServices, type VolumeWait } from '../hooks/useServices';
import { useSession } from '../hooks/useSession';
import { useWorkers } from '../hooks/useWorkers';
import { useRouter } from '../router';
import { colors } from '../theme';
import { servicesStyles as s } from './services.styles';

export function ServicesScreen({ selected, range }: { selected?: string; range?: string }) {
  const services = useServices();
  const { navigate } = useRouter();
  return (
    <Screen kicker="The catalog" title="Services" subtitle="Built-in services and those admins defined, with the instances that serve them. Select a service to manage it." testID="services-screen">
      <Card title="Catalog">
        <ErrorBanner error={services.error} onRetry={() => void services.reload()} />
        {!services.data && !services.error ? <Spinner label="Loading the catalog…" /> : null}
        {services.data ? (
          <Table
            testID="services-table"
            data={services.data}
            keyOf={(x) => x.service.name}
            selectedKey={selected}
            onPress={(x) => navigate({ name: 'service', service: x.service.name })}
            empty="The catalog is empty."
            columns={[
              {
                key: 'name',
                title: 'Service',
                flex: 3,
                render: (x) => (
                  <View>
                    <Text style={s.name}>{x.service.name}</Text>
                    <Text style={s.description} numberOfLines={1}>
                      {x.service.description}
                    </Text>
                  </View>
                ),
              },
              { key: 'state', title: 'State', render: (x) => <StatusBadge status={serviceHealth(x)} testID={`service-state-${x.service.name}`} /> },
              {
                key: 'replicas',
                title: 'Healthy',
                render: (x) => (x.service.enabled ? `${x.deployment?.healthy ?? 0} / ${x.deployment?.spec?.replicas ?? '—'}` : '—'),
              },
              { key: 'kind', title: 'Kind', render: (x) => (x.service.builtin ? 'built-in' : 'defined') + (x.service.stateful ? ', stateful' : '') },
            ]}
          />
        ) : null}
      </Card>
      {selected ? <ServiceDetail key={selected} name={selected} /> : null}
      {selected ? (
        <ServiceHistory
          key={`history-${selected}`}
          name={selected}
          range={rangeOf(range)}
          onRange={(r) => navigate({ name: 'service', service: selected, range: r }, { replace: true })}
        />
      ) : null}
    </Screen>
  );
}

function ServiceDetail({ name }: { name: string }) {
  const { isAdmin } = useSession();
  const { navigate } = useRouter();
  const deployment = useDeployment(name);
  const workers = useWorkers(10000);
  const actions = useServiceActions();
  // What the admin typed; until then, the deployment's current replicas.
  const [typed, setReplicas] = useState<string | null>(null);
  const [confirmDisable, setConfirmDisable] = useState(false);
  const [logsOf, setLogsOf] = useState<Instance | undefined>(undefined);
  const d = deployment.data;

  const replicas = typed ?? String(d?.spec?.replicas ?? 1);

  const act = useAction(async (what: 'enable' | 'disable' | 'deploy') => {
    if (what === 'enable') await actions.enable(name);
    if (what === 'disable') await actions.disable(name);
    if (what === 'deploy') {
      const n = Number(replicas);
      if (!Number.isInteger(n) || n < 0) throw new Error('Replicas must be a whole number, 0 or more.');
      await actions.deploy(name, n);
    }
    await deployment.reload();
  });

  const workerOf = (id: string): Worker | undefined => workers.data?.find((w) => w.id === id);

  return (
    <Card
      title={name}
      subtitle="Deployment and instances"
      testID="service-detail"
      actions={
        <>
          <Button label="Logs" size="small" variant="ghost" onPress={() => navigate({ name: 'logs', service: name })} testID="service-logs" accessibilityLabel={`Logs of ${name}`} />
          {d ? <StatusBadge status={d.enabled ? 'enabled' : 'disabled'} testID="service-enabled" /> : null}
        </>
      }
    >
      <ErrorBanner error={deployment.error} onRetry={() => void deployment.reload()} />
      <ErrorBanner error={act.error} testID="service-action-error" />
      {!d && !deployment.error ? <Spinner label="Loading the deployment…" /> : null}
      {d ? (
        <>
          {d.waiting_for_volume ? (
            <WarnBanner title={volumeWaitTitle(d.waiting_for_volume)} testID="service-waiting-for-volume">
              {d.waiting_for_volume.message}
            </WarnBanner>
          ) : null}
          {isAdmin ? (
            <View style={s.actions}>
              {d.enabled ? (
                <Button label="Disable" variant="danger" onPress={() => setConfirmDisable(true)} busy={act.running} testID="service-disable" />
              ) : (
                <Button label="Enable" variant="primary" onPress={() => void act.run('enable')} busy={act.running} testID="service-enable" />
              )}
              <Field label="Replicas" value={replicas} onChangeText={setReplicas} numeric style={s.replicas} testID="service-replicas" />
              <Button label="Deploy" onPress={() => void act.run('deploy')} busy={act.running} testID="service-deploy" />
            </View>
          ) : null}
          <View style={s.specRow}>
            <Spec label="Healthy" value={`${d.healthy} / ${d.spec?.replicas ?? 0}`} testID="service-healthy" />
            <Spec label="CPU" value={d.spec ? `${d.spec.resources.cpu_millicores} m` : '—'} />
            <Spec label="Memory" value={d.spec ? `${d.spec.resources.memory_mb} MB` : '—'} />
            <Spec label="Strategy" value={d.spec?.strategy ?? '—'} />
            <Spec label="Driver" value={d.spec?.driver ?? 'any'} />
            <Spec label="Balancing" value={d.load_balancing.replace(/_/g, ' ')} />
          </View>
          {d.problem ? <ErrorBanner error={new Error(d.problem)} /> : null}
          {d.waiting_for.length > 0 ? <InfoBanner>{`Waiting for ${d.waiting_for.join(', ')} to have a healthy instance.`}</InfoBanner> : null}
          <Table
            testID="service-instances"
            data={d.instances}
            keyOf={(i) => i.id}
            selectedKey={logsOf?.id}
            empty={d.enabled ? 'No instance yet.' : 'Disabled: nothing runs.'}
            columns={[
              { key: 'id', title: 'Instance', render: (i) => shortId(i.id) },
              { key: 'worker', title: 'Worker', flex: 1.4, render: (i) => workerOf(i.worker_id)?.name ?? shortId(i.worker_id) },
              {
                key: 'health',
                title: 'Health',
                flex: 1.4,
                render: (i) => (
                  <View>
                    <StatusBadge status={i.health} testID={`instance-health-${i.id}`} />
                    {i.reason ? (
                      <Text style={s.reason} numberOfLines={1}>
                        {i.reason}
                      </Text>
                    ) : null}
                  </View>
                ),
              },
              { key: 'state', title: 'State', render: (i) => <StatusBadge status={i.state} /> },
              { key: 'restarts', title: 'Restarts', render: (i) => String(i.restarts) },
              { key: 'address', title: 'Address', flex: 1.4, render: (i) => i.address ?? '—' },
              { key: 'updated', title: 'Updated', render: (i) => ago(i.updated_at) },
              {
                key: 'logs',
                title: '',
                render: (i) => <Button label={logsOf?.id === i.id ? 'Hide logs' : 'Logs'} size="small" variant="ghost" onPress={() => setLogsOf(logsOf?.id === i.id ? undefined : i)} testID={`instance-logs-${i.id}`} />,
              },
            ]}
          />
          {logsOf ? <InstanceLogs instance={logsOf} worker={workerOf(logsOf.worker_id)} /> : null}
        </>
      ) : null}
      <ConfirmDialog
        visible={confirmDisable}
        title={`Disable ${name}?`}
        message="Its instances are stopped and the gateway stops routing to it. Its data stays on its worker; enabling it again starts it from there."
        confirmLabel="Disable"
        danger
        busy={act.running}
        onCancel={() => setConfirmDisable(false)}
        onConfirm={() => {
          void act.run('disable').then(() => setConfirmDisable(false));
        }}
      />
    </Card>
  );
}

/**
 * The service's requests a second, 5xx answers a second and latency (p50, p99) over `range`,
 * across its instances: metrics_manager's history of their `aerekos_http_requests_total` and
 * `aerekos_http_request_duration_seconds` (health checks and scrapes included).
 */
function ServiceHistory({ name, range, onRange }: { name: string; range: MetricsRange; onRange(range: MetricsRange): void }) {
  const mine = ['job=service', `service=${name}`];
  const history = useMetricHistory(
    {
      requests: counter('aerekos_http_requests_total', mine, { aggregation: 'sum' }),
      errors: counter('aerekos_http_requests_total', [...mine, 'status=~5..'], { aggregation: 'sum' }),
      p50: counter('aerekos_http_request_duration_seconds_bucket', mine, { quantile: 0.5 }),
      p99: counter('aerekos_http_request_duration_seconds_bucket', mine, { quantile: 0.99 }),
    },
    range,
  );
  const h = history.data?.series;
  const chart = {
    start: history.data?.start ?? 0,
    end: history.data?.end ?? 0,
    since: METRICS_RANGES[range].since,
    message: history.data ? undefined : historyMessage(history.error),
  };
  const noRequests = 'No request in this range (or no instance scraped yet).';
  return (
    <Card title="Requests" subtitle={`${name}'s instances as metrics_manager scraped their /metrics`} actions={<RangePicker range={range} onChange={onRange} />} testID="service-history">
      <HistoryBanner error={history.error} onRetry={() => void history.reload()} />
      <View style={s.charts}>
        <View style={s.chart}>
          <HistoryChart title="Requests" points={pointsOf(h?.requests)} format={perSecond} {...chart} empty={noRequests} testID="service-chart-requests" />
        </View>
        <View style={s.chart}>
          <HistoryChart title="5xx answers" points={pointsOf(h?.errors)} format={perSecond} color={colors.danger} {...chart} empty="No 5xx answer in this range." testID="service-chart-errors" />
        </View>
        <View style={s.chart}>
          <HistoryChart title="Latency p50" points={pointsOf(h?.p50)} format={latency} color={colors.goldBright} {...chart} empty={noRequests} testID="service-chart-p50" />
        </View>
        <View style={s.chart}>
          <HistoryChart title="Latency p99" points={pointsOf(h?.p99)} format={latency} color={colors.goldDim} {...chart} empty={noRequests} testID="service-chart-p99" />
        </View>
      </View>
    </Card>
  );
}

/** "Waiting for worker w1 (lost 5 min ago), which holds its volume key_manager". */
function volumeWaitTitle(w: VolumeWait): string {
  const worker = w.worker_name ? `worker ${w.worker_name}` : `worker ${shortId(w.worker_id)} (removed)`;
  const since = w.lost_since ? ` (lost ${ago(w.lost_since)})` : '';
  return `Waiting for ${worker}${since}, which holds its volume ${w.volume}`;
}

function Spec({ label, value, testID }: { label: string; value: string; testID?: string }) {
  return (
    <View style={s.spec}>
      <Text style={s.specLabel}>{label}</Text>
      <Text style={s.specValue} testID={testID}>
        {value}
      </Text>
    </View>
  );
}

function InstanceLogs({ instance, worker }: { instance: Instance; worker: Worker | undefined }) {
  const logs = useInstanceLogs(worker, instance.id);
  const { navigate } = useRouter();
  return (
    <View testID="instance-logs">
      <View style={s.logsHeader}>
        <Text style={s.logsTitle}>
          Recent output of {shortId(instance.id)} on {worker?.name ?? shortId(instance.worker_id)}
        </Text>
        <View style={s.logsButtons}>
          <Button
            label="All its lines"
            size="small"
            variant="ghost"
            onPress={() => navigate({ name: 'logs', instance: instance.id })}
            testID="instance-logs-open"
            accessibilityLabel={`All the lines of instance ${shortId(instance.id)} in Logs`}
          />
          <Button label="Refresh" size="small" variant="ghost" onPress={() => void logs.reload()} />
        </View>
      </View>
      <ErrorBanner error={logs.error} />
      {logs.data === undefined && !logs.error ? <Spinner label="Reading the output…" /> : null}
      {logs.data !== undefined ? <CodeBlock text={logs.data || '(no output yet)'} testID="instance-logs-text" /> : null}
    </View>
  );
}
