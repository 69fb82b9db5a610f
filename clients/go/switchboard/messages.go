package switchboard

import pb "switchboard.dev/clients/go/switchboardv1"

// Request is a CompleteRequest for model (a group or an alias) with
// messages; set the optional fields on the result.
func Request(model string, messages ...*pb.Message) *pb.CompleteRequest {
	return &pb.CompleteRequest{Model: model, Messages: messages}
}

// System is a system message.
func System(content string) *pb.Message {
	return &pb.Message{Role: pb.Role_ROLE_SYSTEM, Content: content}
}

// User is a user message.
func User(content string) *pb.Message {
	return &pb.Message{Role: pb.Role_ROLE_USER, Content: content}
}

// Assistant is an assistant message, for replaying a conversation.
func Assistant(content string) *pb.Message {
	return &pb.Message{Role: pb.Role_ROLE_ASSISTANT, Content: content}
}
