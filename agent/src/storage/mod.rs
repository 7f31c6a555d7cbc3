//! Storage autoscaling: data volumes that grow before they fill, inside the user's bounds,
//! while Terraform is not running. [`decide`] is the pure decision, [`ec2`] the EBS side,
//! [`block`] the partition/LVM/filesystem side, [`autoscaler`] the loop that ties them
//! together and reports [`AutoscaleStatus`]. It never shrinks a volume and never exceeds
//! `max_size_gib`.

pub mod autoscaler;
pub mod block;
pub mod decide;
pub mod discover;
pub mod ec2;

pub use autoscaler::{
    ActionRecord, AutoscaleConfig, AutoscaleError, AutoscaleStatus, Autoscaler, Clock,
    SegmentStatus, SystemClock, TickError, describe_decision, run_autoscaler,
};
pub use block::{BlockError, BlockStorage, DataLayout, FsType, LinuxBlockStorage};
pub use decide::{
    Bounds, BoundsError, Decision, EBS_MAX_VOLUME_GIB, EBS_MODIFICATION_COOLDOWN, FsUsage,
    NothingReason, VolumeState, decide,
};
pub use ec2::{Ec2Client, Ec2Error, Ec2Volumes, NewSegment, VolumeInfo, WaitPolicy};
