// The audit trail (admins only): every change asked of the conductor, and the reads that hand out
// secrets: when, who, what, on which path, and what it answered (2xx done, 4xx refused, 5xx
// failed). The newest first, polled; filtered by actor, action and "failed only" (kept in the
// address); older events a page at a time.

import { useEffect, useState } from 'react';
import { Text, View } from 'react-native';

import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { Checkbox } from '../components/Checkbox';
import { ErrorBanner, InfoBanner } from '../components/ErrorBanner';
import { Field } from '../components/Field';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { ago, dateTime } from '../format';
import { useAudit, type AuditEvent, type AuditFilter } from '../hooks/useAudit';
import { useSession } from '../hooks/useSession';
import { useRouter } from '../router';
import type { Tone } from '../theme';
import { auditStyles as s } from './audit.styles';

/** 2xx done, 4xx refused, 5xx failed. */
export function statusTone(status: number): Tone {
  if (status >= 500) return 'danger';
  if (status >= 400) return 'warn';
  if (status >= 300) return 'info';
  return 'ok';
}

export function AuditScreen(filter: AuditFilter) {
  const { isAdmin } = useSession();
  return (
    <Screen
      kicker="Access"
      title="Audit"
      subtitle="Every change asked of the conductor, and the reads that hand out secrets: who asked, for what, and what it answered, refused ones included. The newest first."
      testID="audit-screen"
    >
      {isAdmin ? (
        <AuditTrail {...filter} />
      ) : (
        <Card title="Audit trail">
          <InfoBanner testID="audit-admins-only">Only admins can read the audit trail.</InfoBanner>
        </Card>
      )}
    </Screen>
  );
}

function AuditTrail({ actor, action, failed }: AuditFilter) {
  const { navigate } = useRouter();
  const audit = useAudit({ actor, action, failed });
  // What is typed; applied (into the address, which the trail follows) with Apply or Enter.
  const [actorText, setActorText] = useState(actor ?? '');
  const [actionText, setActionText] = useState(action ?? '');
  useEffect(() => setActorText(actor ?? ''), [actor]);
  useEffect(() => setActionText(action ?? ''), [action]);

  const apply = (failedOnly = failed ?? false) =>
    navigate(
      {
        name: 'audit',
        ...(actorText.trim() ? { actor: actorText.trim() } : {}),
        ...(actionText.trim() ? { action: actionText.trim() } : {}),
        ...(failedOnly ? { failed: true } : {}),
      },
      { replace: true },
    );
  const filtered = Boolean(actor || action || failed);
  const events = audit.view?.events;

  return (
    <>
      <Card title="Filter" testID="audit-filters">
        <View style={s.filters}>
          <Field label="Actor" value={actorText} onChangeText={setActorText} onSubmit={() => apply()} placeholder="e.g. user:alice" style={s.filterField} testID="audit-actor" />
          <Field label="Action" value={actionText} onChangeText={setActionText} onSubmit={() => apply()} placeholder="e.g. create_user" style={s.filterField} testID="audit-action" />
          <Checkbox label="Failed only (4xx, 5xx)" checked={failed ?? false} onChange={(on) => apply(on)} testID="audit-failed" />
          <View style={s.filterButtons}>
            <Button label="Apply" variant="primary" onPress={() => apply()} testID="audit-apply" />
            <Button
              label="Clear"
              variant="ghost"
              disabled={!filtered && !actorText && !actionText}
              onPress={() => {
                setActorText('');
                setActionText('');
                navigate({ name: 'audit' }, { replace: true });
              }}
              testID="audit-clear"
            />
          </View>
        </View>
      </Card>

      <Card
        title="Events"
        subtitle={events ? `${events.length} shown${filtered ? ', filtered' : ''} · the newest first` : undefined}
        testID="audit-events"
      >
        <ErrorBanner error={audit.error} onRetry={() => void audit.refresh()} />
        {!events && !audit.error ? <Spinner label="Loading the audit trail…" /> : null}
        {events ? (
          <Table
            testID="audit-table"
            data={events}
            keyOf={(e) => String(e.id)}
            empty={filtered ? 'No event matches the filter.' : 'Nothing has been recorded yet.'}
            columns={[
              {
                key: 'at',
                title: 'Time',
                flex: 1.5,
                render: (e) => (
                  <View>
                    <Text style={s.time}>{dateTime(e.at)}</Text>
                    <Text style={s.sub}>{ago(e.at)}</Text>
                  </View>
                ),
              },
              { key: 'actor', title: 'Actor', flex: 1.1, render: (e) => e.actor },
              {
                key: 'action',
                title: 'Action',
                flex: 1.2,
                render: (e) => (
                  <Text style={s.mono} numberOfLines={1}>
                    {e.action}
                  </Text>
                ),
              },
              {
                key: 'target',
                title: 'Target',
                flex: 1.9,
                render: (e) => (
                  <Text style={s.mono} numberOfLines={1} selectable>
                    {e.target}
                  </Text>
                ),
              },
              {
                key: 'status',
                title: 'Status',
                flex: 0.7,
                render: (e: AuditEvent) => <StatusBadge status={String(e.status)} tone={statusTone(e.status)} testID={`audit-status-${e.id}`} />,
              },
              {
                key: 'client',
                title: 'Client',
                flex: 0.9,
                render: (e) => (
                  <Text style={s.monoFaint} numberOfLines={1}>
                    {e.client_ip ?? '—'}
                  </Text>
                ),
              },
              {
                key: 'request',
                title: 'Request id',
                flex: 1.3,
                render: (e) => (
                  <Text style={s.monoFaint} numberOfLines={1} selectable>
                    {e.request_id || '—'}
                  </Text>
                ),
              },
            ]}
          />
        ) : null}
        {audit.view && audit.view.nextBefore !== undefined ? (
          <View style={s.more}>
            <Button label="Load older" onPress={() => void audit.loadOlder()} busy={audit.loadingOlder} testID="audit-older" />
          </View>
        ) : events && events.length > 0 ? (
          <View style={s.more}>
            <Text style={s.end} testID="audit-end">
              {filtered ? 'No older event matches.' : 'The beginning of the trail.'}
            </Text>
          </View>
        ) : null}
      </Card>
    </>
  );
}
