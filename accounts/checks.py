"""What verify_event_store checks of the bank's own meaning, beyond what the store promises."""

# Every TransferSent is matched by exactly one TransferReceived of the same transfer id and
# amount, in the account it names, naming it back; quarantined events are left out.
TRANSFERS = (
    "transfers not matched by exactly one counterpart of the same amount",
    """
    WITH legs AS (
        SELECT e.id, e.aggregate_id::text AS account, e.event_type = 'TransferSent' AS sent,
               e.event_data->>'transfer_id' AS transfer_id, e.event_data->>'amount' AS amount,
               COALESCE(e.event_data->>'to_account_id', e.event_data->>'from_account_id') AS other
          FROM events e
         WHERE e.event_type IN ('TransferSent', 'TransferReceived')
           AND NOT EXISTS (SELECT 1 FROM event_quarantine q WHERE q.event_id = e.id)
    ), transfers AS (
        SELECT transfer_id, count(*) FILTER (WHERE sent) AS sent, count(*) FILTER (WHERE NOT sent) AS received,
               count(DISTINCT amount) AS amounts,
               max(account) FILTER (WHERE sent) = max(other) FILTER (WHERE NOT sent)
               AND max(other) FILTER (WHERE sent) = max(account) FILTER (WHERE NOT sent) AS crossed
          FROM legs GROUP BY transfer_id
    )
    SELECT e.aggregate_id, e.version, e.id,
           e.event_type || ' of transfer ' || COALESCE(t.transfer_id, '?') || ': ' || t.sent || ' sent, '
           || t.received || ' received, ' || t.amounts || ' amounts'
      FROM legs JOIN transfers t ON t.transfer_id IS NOT DISTINCT FROM legs.transfer_id
      JOIN events e ON e.id = legs.id
     WHERE {since} AND NOT (t.sent = 1 AND t.received = 1 AND t.amounts = 1 AND COALESCE(t.crossed, FALSE))
    """,
)
