// Logs: the lines logs_manager keeps, every instance's output and the platform's own (the
// conductor's, the workers'). The newest first, filtered by service, level, text and request id
// (and instance or worker, from the links on the service and worker pages), all kept in the
// address; older lines a page at a time; Follow shows new lines as they are stored. A line's
// request id filters by it, to see one request across the conductor and the services.

import type { Worker } from '@aerekos/sdk';
import { useEffect, useState } from 'react';
import { Pressable, Text, View } from 'react-native';

import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { Checkbox } from '../components/Checkbox';
import { ErrorBanner } from '../components/ErrorBanner';
import { Field } from '../components/Field';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { clockTime, localDate, shortId } from '../format';
import { LOG_LEVELS, LOGS_KEPT, isLogLevel, useLogServices, useLogs, type LogFilter, type LogLevel, type LogRecord } from '../hooks/useLogs';
import { useWorkers } from '../hooks/useWorkers';
import { useRouter, type LogsRoute } from '../router';
import type { Tone } from '../theme';
import { logsStyles as s } from './logs.styles';

export function levelTone(level: LogLevel): Tone {
  switch (level) {
    case 'error':
      return 'danger';
    case 'warn':
      return 'warn';
    case 'info':
      return 'info';
    default:
      return 'muted';
  }
}

export type LogsScreenProps = Omit<LogsRoute, 'name'>;

export function LogsScreen(props: LogsScreenProps) {
  const { navigate } = useRouter();
  const { service, instance, worker, contains, request_id } = props;
  const level = isLogLevel(props.level) ? props.level : undefined;
  const filter: LogFilter = { service, instance, worker, level, contains, request_id };
  const [follow, setFollow] = useState(false);
  const logs = useLogs(filter, follow);
  const services = useLogServices();
  const workers = useWorkers(30000);

  // What is typed; applied (into the address, which the lines follow) with Apply or Enter.
  const [serviceText, setServiceText] = useState(service ?? '');
  const [containsText, setContainsText] = useState(contains ?? '');
  const [requestText, setRequestText] = useState(request_id ?? '');
  useEffect(() => setServiceText(service ?? ''), [service]);
  useEffect(() => setContainsText(contains ?? ''), [contains]);
  useEffect(() => setRequestText(request_id ?? ''), [request_id]);

  /** The address with `change` over the current filters (the typed ones as typed). */
  const go = (change: Partial<LogsScreenProps>) => {
    const next: LogsScreenProps = {
      service: serviceText.trim() || undefined,
      instance,
      worker,
      level: props.level,
      contains: containsText.trim() || undefined,
      request_id: requestText.trim() || undefined,
      ...change,
    };
    const route: LogsRoute = { name: 'logs' };
    for (const [k, v] of Object.entries(next) as [keyof LogsScreenProps, string | undefined][]) if (v) route[k] = v;
    navigate(route, { replace: true });
  };
  const filtered = Boolean(service || instance || worker || props.level || contains || request_id);
  const workerName = (id: string | undefined): string | undefined => (id ? workers.data?.find((w: Worker) => w.id === id)?.name : undefined);

  const records = logs.view?.records;
  const subtitle = records
    ? `${records.length} ${records.length === 1 ? 'line' : 'lines'}${filtered ? ', filtered' : ''} · the newest first${follow ? ' · following' : ''}`
    : undefined;

  return (
    <Screen
      kicker="Observability"
      title="Logs"
      subtitle="Every instance's output and the platform's own lines (the conductor's, the workers'), as logs_manager keeps them. The newest first; Follow adds new lines as they are stored."
      testID="logs-screen"
    >
      <Card title="Filter" testID="logs-filters">
        <View style={s.pickRow} role="group" aria-label="Lines of service">
          <Text style={s.pickLabel}>Service</Text>
          {[undefined, ...(services.data ?? [])].map((name) => (
            <Button
              key={name ?? 'all'}
              label={name ?? 'all'}
              size="small"
              variant={name === service ? 'primary' : 'ghost'}
              onPress={() => go({ service: name })}
              testID={`logs-service-${name ?? 'all'}`}
              accessibilityLabel={name ? `Only ${name}'s lines` : "Every service's lines"}
            />
          ))}
        </View>
        <View style={s.pickRow} role="group" aria-label="Lines of level">
          <Text style={s.pickLabel}>At least</Text>
          {[undefined, ...LOG_LEVELS].map((l) => (
            <Button
              key={l ?? 'any'}
              label={l ?? 'any level'}
              size="small"
              variant={l === level ? 'primary' : 'ghost'}
              onPress={() => go({ level: l })}
              testID={`logs-level-${l ?? 'any'}`}
              accessibilityLabel={l ? `Level ${l} and above` : 'Any level'}
            />
          ))}
        </View>
        {props.level && !level ? <ErrorBanner error={new Error(`${props.level} is not a level: it is one of ${LOG_LEVELS.join(', ')}.`)} /> : null}
        <View style={s.filters}>
          <Field label="Service" value={serviceText} onChangeText={setServiceText} onSubmit={() => go({})} placeholder="e.g. key_manager" style={s.filterField} testID="logs-service" />
          <Field label="Contains" value={containsText} onChangeText={setContainsText} onSubmit={() => go({})} placeholder="text in the line" style={s.filterField} testID="logs-contains" />
          <Field label="Request id" value={requestText} onChangeText={setRequestText} onSubmit={() => go({})} placeholder="X-Request-Id" mono style={s.filterField} testID="logs-request-id" />
          <View style={s.filterButtons}>
            <Button label="Apply" variant="primary" onPress={() => go({})} testID="logs-apply" />
            <Button
              label="Clear"
              variant="ghost"
              disabled={!filtered && !serviceText && !containsText && !requestText}
              onPress={() => {
                setServiceText('');
                setContainsText('');
                setRequestText('');
                navigate({ name: 'logs' }, { replace: true });
              }}
              testID="logs-clear"
            />
          </View>
        </View>
        {instance || worker ? (
          <View style={s.chips}>
            {instance ? (
              <FilterChip label="instance" value={shortId(instance)} onClear={() => go({ instance: undefined })} testID="logs-instance-filter" />
            ) : null}
            {worker ? (
              <FilterChip label="worker" value={workerName(worker) ?? shortId(worker)} onClear={() => go({ worker: undefined })} testID="logs-worker-filter" />
            ) : null}
          </View>
        ) : null}
      </Card>

      <Card
        title="Lines"
        subtitle={subtitle}
        testID="logs-lines"
        actions={
          <View style={s.lineActions}>
            {follow ? (
              <StatusBadge
                status={logs.tail}
                label={logs.tail === 'retrying' ? 'reconnecting' : logs.tail}
                tone={logs.tail === 'live' ? 'ok' : logs.tail === 'retrying' ? 'warn' : 'muted'}
                testID="logs-tail-state"
              />
            ) : null}
            <Checkbox label="Follow" checked={follow} onChange={setFollow} testID="logs-follow" />
            <Button label="Refresh" size="small" onPress={() => void logs.refresh()} disabled={follow} busy={logs.loading && logs.view !== undefined} testID="logs-refresh" />
          </View>
        }
      >
        <ErrorBanner error={logs.error} onRetry={() => void logs.refresh()} />
        <ErrorBanner error={logs.tailError} testID="logs-tail-error" />
        {!records && !logs.error ? <Spinner label="Reading the logs…" /> : null}
        {records ? (
          <Table
            testID="logs-table"
            data={records}
            keyOf={(r) => String(r.id)}
            empty={filtered ? 'No line matches the filter.' : 'No line has been kept yet.'}
            columns={[
              {
                key: 'time',
                title: 'Time',
                flex: 1,
                render: (r) => (
                  <View>
                    <Text style={s.time}>{clockTime(r.time)}</Text>
                    <Text style={s.sub}>{localDate(r.time)}</Text>
                  </View>
                ),
              },
              {
                key: 'source',
                title: 'Source',
                flex: 1.4,
                render: (r) => <Source record={r} workerName={workerName(r.worker)} />,
              },
              {
                key: 'level',
                title: 'Level',
                flex: 0.7,
                render: (r) => (r.level ? <StatusBadge status={r.level} tone={levelTone(r.level)} /> : <Text style={s.none}>—</Text>),
              },
              {
                key: 'message',
                title: 'Line',
                flex: 5.5,
                render: (r) => (
                  <View>
                    <Text style={s.message} selectable testID={`log-line-${r.id}`}>
                      {r.message}
                    </Text>
                    {r.request_id && r.request_id !== request_id ? (
                      <Pressable role="link" aria-label={`Lines of request ${r.request_id}`} onPress={() => go({ request_id: r.request_id })}>
                        {({ hovered }) => <Text style={[s.requestLink, hovered && s.requestLinkHover]}>{`request ${r.request_id}`}</Text>}
                      </Pressable>
                    ) : null}
                  </View>
                ),
              },
            ]}
          />
        ) : null}
        {logs.view?.nextCursor !== undefined ? (
          <View style={s.more}>
            <Button label="Load older" onPress={() => void logs.loadOlder()} busy={logs.loadingOlder} testID="logs-older" />
          </View>
        ) : logs.view?.trimmed ? (
          <View style={s.more}>
            <Text style={s.end} testID="logs-trimmed">
              {`The newest ${LOGS_KEPT} lines are kept while following: stop following and Refresh to page back.`}
            </Text>
          </View>
        ) : records && records.length > 0 ? (
          <View style={s.more}>
            <Text style={s.end} testID="logs-end">
              {filtered ? 'No older line matches.' : 'The oldest line kept.'}
            </Text>
          </View>
        ) : null}
      </Card>
    </Screen>
  );
}

/** The service and instance a line came from (or the platform process), its worker, stderr. */
function Source({ record: r, workerName }: { record: LogRecord; workerName: string | undefined }) {
  const where = [r.instance ? shortId(r.instance) : undefined, workerName ?? (r.worker ? shortId(r.worker) : undefined)].filter(Boolean).join(' · ');
  return (
    <View>
      <Text style={s.service} numberOfLines={1} testID={`log-service-${r.id}`}>
        {r.service ?? '—'}
      </Text>
      {where ? (
        <Text style={s.subMono} numberOfLines={1}>
          {where}
        </Text>
      ) : null}
      {r.stream === 'stderr' ? <Text style={s.stderr}>stderr</Text> : null}
    </View>
  );
}

function FilterChip({ label, value, onClear, testID }: { label: string; value: string; onClear(): void; testID?: string }) {
  return (
    <View style={s.chip} testID={testID}>
      <Text style={s.chipKey}>{label}</Text>
      <Text style={s.chipValue}>{value}</Text>
      <Button label="×" size="small" variant="ghost" onPress={onClear} accessibilityLabel={`Any ${label}`} />
    </View>
  );
}
