"""The GraphQL schema (SDL) of the control plane: a subset of DataHub's, same names and shapes.

Operations, inputs and field names follow DataHub's ``ingestion.graphql`` (open-source GMS)
and, for ``listExecutorConfigs``, DataHub Cloud's remote-executor API as PROTOCOL.md records
it. ``createTestConnectionRequest`` also takes an optional ``executorId`` (DataHub routes test
connections to ``default``). Fields of DataHub's schema that need the rest of DataHub (owners,
platforms, actors as entities) are left out.
"""

from __future__ import annotations

SDL = """
scalar Long

enum EntityType { EXECUTION_REQUEST INGESTION_SOURCE }
enum SortOrder { ASCENDING DESCENDING }
enum FilterOperator {
  EQUAL CONTAIN IN EXISTS GREATER_THAN GREATER_THAN_OR_EQUAL_TO LESS_THAN LESS_THAN_OR_EQUAL_TO
  START_WITH END_WITH DESCENDANTS_INCL ANCESTORS_INCL RELATED_INCL
}

type Query {
  listExecutorConfigs(input: ListExecutorConfigsInput): ListExecutorConfigsResult
  getSecretValues(input: GetSecretValuesInput!): [SecretValue!]
  listSecrets(input: ListSecretsInput!): ListSecretsResult
  ingestionSource(urn: String!): IngestionSource
  listIngestionSources(input: ListIngestionSourcesInput!): ListIngestionSourcesResult
  executionRequest(urn: String!): ExecutionRequest
  listExecutionRequests(input: ListExecutionRequestsInput!): IngestionSourceExecutionRequests
}

type Mutation {
  createSecret(input: CreateSecretInput!): String
  updateSecret(input: UpdateSecretInput!): String
  deleteSecret(urn: String!): String
  createIngestionSource(input: UpdateIngestionSourceInput!): String
  updateIngestionSource(urn: String!, input: UpdateIngestionSourceInput!): String
  deleteIngestionSource(urn: String!): String
  createIngestionExecutionRequest(input: CreateIngestionExecutionRequestInput!): String
  cancelIngestionExecutionRequest(input: CancelIngestionExecutionRequestInput!): String
  createTestConnectionRequest(input: CreateTestConnectionRequestInput!): String
}

input ListExecutorConfigsInput { executorIds: [String!] }
type ListExecutorConfigsResult { total: Int! executorConfigs: [RemoteExecutorConfig!]! }
type RemoteExecutorConfig {
  executorId: String!
  region: String!
  queueUrl: String!
  accessKeyId: String!
  secretKeyId: String!
  sessionToken: String!
  expiration: String!
}

input GetSecretValuesInput { secrets: [String!]! }
type SecretValue { name: String! value: String! }
input CreateSecretInput { name: String! value: String! description: String }
input UpdateSecretInput { urn: String! name: String! value: String! description: String }
input ListSecretsInput { start: Int count: Int query: String }
type Secret { urn: String! name: String! description: String }
type ListSecretsResult { start: Int count: Int total: Int secrets: [Secret!]! }

type StringMapEntry { key: String! value: String }
input StringMapEntryInput { key: String! value: String }
input FacetFilterInput {
  field: String!
  value: String
  values: [String!]
  negated: Boolean
  condition: FilterOperator
}
input SortCriterion { field: String! sortOrder: SortOrder! }

input UpdateIngestionSourceScheduleInput { interval: String! timezone: String! }
input UpdateIngestionSourceConfigInput {
  recipe: String!
  version: String
  executorId: String!
  debugMode: Boolean
  extraArgs: [StringMapEntryInput!]
}
input UpdateIngestionSourceInput {
  name: String!
  type: String!
  description: String
  schedule: UpdateIngestionSourceScheduleInput
  config: UpdateIngestionSourceConfigInput!
}
input ListIngestionSourcesInput {
  start: Int
  count: Int
  query: String
  filters: [FacetFilterInput!]
  sort: SortCriterion
}
type IngestionSchedule { timezone: String interval: String! }
type IngestionConfig {
  recipe: String!
  executorId: String!
  version: String
  debugMode: Boolean
  extraArgs: [StringMapEntry!]
}
type IngestionSource {
  urn: String!
  type: String!
  name: String!
  schedule: IngestionSchedule
  config: IngestionConfig!
  executions(start: Int, count: Int): IngestionSourceExecutionRequests
}
type ListIngestionSourcesResult { start: Int! count: Int! total: Int! ingestionSources: [IngestionSource!]! }

input CreateIngestionExecutionRequestInput { ingestionSourceUrn: String! }
input CancelIngestionExecutionRequestInput { ingestionSourceUrn: String! executionRequestUrn: String! }
input CreateTestConnectionRequestInput { recipe: String! version: String executorId: String }
input ListExecutionRequestsInput {
  start: Int
  count: Int
  query: String
  filters: [FacetFilterInput!]
  sort: SortCriterion
}

type ExecutionRequestSource { type: String ingestionSource: String }
type ExecutionRequestInput {
  task: String!
  source: ExecutionRequestSource!
  arguments: [StringMapEntry!]
  requestedAt: Long!
  actorUrn: String
  executorId: String
}
type StructuredReport { type: String! serializedValue: String! contentType: String! }
type ExecutionRequestResult {
  status: String!
  startTimeMs: Long
  durationMs: Long
  report: String
  structuredReport: StructuredReport
}
type ExecutionRequest {
  urn: String!
  type: EntityType!
  id: String!
  input: ExecutionRequestInput!
  result: ExecutionRequestResult
  source: IngestionSource
}
type IngestionSourceExecutionRequests {
  start: Int
  count: Int
  total: Int
  executionRequests: [ExecutionRequest!]!
}
"""
