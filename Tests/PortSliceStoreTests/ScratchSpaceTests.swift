import Foundation
import Testing
@testable import PortSliceTestSupport

/// The names scratch space gives, read back: only its own shapes name a process, so a later
/// run never takes another tool's database or directory for a leftover of its own.
@Suite("Test scratch space")
struct ScratchSpaceTests {
    @Test func processIDsAreReadOnlyFromNamesOfTheirShape() {
        #expect(ScratchSpace.processID(in: "portslice_test_8750_2093453493", after: "portslice_test_", parts: 2) == 8750)
        #expect(ScratchSpace.processID(in: "portslice-tests-8750", after: "portslice-tests-", parts: 1) == 8750)
        // Names of other shapes, or from before the process was in the name: not ours to drop.
        for name in ["portslice_test_3662248743", "portslice_test_12_", "portslice_test__12", "portslice_test_12_x", "portslice_test_1_2_3", "other_8750_1"] {
            #expect(ScratchSpace.processID(in: name, after: "portslice_test_", parts: 2) == nil, "\(name)")
        }
        #expect(ScratchSpace.processID(in: "portslice-tests-8750-old", after: "portslice-tests-", parts: 1) == nil)
    }

    @Test func aProcessIsRunningUntilItIsGone() throws {
        #expect(ScratchSpace.isRunning(getpid()))
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        // Reaped by waitUntilExit: the ID names no process now (unless reused at once).
        #expect(!ScratchSpace.isRunning(child.processIdentifier))
    }

    @Test func pathsLieInThisProcesssDirectory() {
        let first = ScratchSpace.path("portslice-store", suffix: ".sqlite"), second = ScratchSpace.path("portslice-store", suffix: ".sqlite")
        #expect(first != second)
        #expect(URL(fileURLWithPath: first).deletingLastPathComponent().lastPathComponent == "portslice-tests-\(getpid())")
        #expect(first.hasSuffix(".sqlite"))
    }
}
