//! DCloud node agent.
