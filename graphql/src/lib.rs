//! DCloud GraphQL schema (to come with the GraphQL issue).
